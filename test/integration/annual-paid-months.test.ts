import { describe, expect, it } from "vitest";
import type { BillingAccount } from "../../lib/billing/index.js";
import { auditAccount, listHistory } from "../../lib/ledger/index.js";
import { balanceOf, changePlanAt, DAY, months as walkMonths, monthStart, PLUS, PRO, refundInvoice as refundAt, renewalPaid } from "../helpers/annual.js";
import { invoicePaid, paidInvoiceEvent, subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";

/**
 * Regressions (outside billing review): an annual plan's scheduled months were granted at the
 * account's *current plan*, tied to no payment. So an upgrade refunded or never paid kept granting
 * the higher plan for the rest of the year (A1, A2); a downgrade, which gives no money back,
 * granted months already paid at the higher plan at the lower one (A3); an upgrade back after a
 * downgrade charged the rest-of-year difference a second time (A4); a refund of the annual invoice
 * withheld (and clawed back) months an upgrade had paid for (A5, A6); a refund that arrived before
 * the account was annual or re-anchored bound nothing, so the refunded year still granted in full
 * (D1, D2); a renewal still past due got its months (D4). Each test below fails on the code before
 * lib/ledger/paid-year.ts (months grant what each payment paid for them).
 *
 * Plus is 40,000 credits a month, pro 100,000; the year starts at T0 = 2026-01-01 12:00 UTC.
 */
captureLogs();
const fx = useBillingFixture();

const SIGNUP = 10_000;
const YEAR_2 = monthStart(12);
const balance = (userId: string) => balanceOf(fx, userId);
const changePlan = (userId: string, plan: string, at: number) => changePlanAt(fx, userId, plan, at);
const months = (userId: string, from: number, to: number, yearStart = T0) => walkMonths(fx, userId, from, to, yearStart);
const refundInvoice = (customer: string, invoiceId: string, amount: number, refunded: number, at: number) =>
  refundAt(fx, customer, invoiceId, amount, refunded, at);

const latestInvoice = (subscriptionId: string) => fx.stripe.subscriptions.get(subscriptionId)?.latest_invoice as string;

describe("an annual month grants what was paid for it", () => {
  it("A1: an upgrade whose proration is refunded grants the lower plan again for the rest of the year", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", interval: "year", amountPaid: 48_000 });
    expect(await months(sub.userId, 1, 3)).toEqual([PLUS, PLUS, PLUS]);
    expect((await changePlan(sub.userId, "pro", monthStart(3) + 15 * DAY)).json).toMatchObject({ status: "upgraded" });
    const upgrade = latestInvoice(sub.subscriptionId);
    const paid = fx.stripe.invoices.get(upgrade)?.amount_paid as number;
    expect(paid).toBeGreaterThan(0);
    expect(await refundInvoice(sub.customer, upgrade, paid, paid, monthStart(3) + 20 * DAY)).toBe("clawed_back");
    expect(await months(sub.userId, 4, 11)).toEqual(Array(8).fill(PLUS));
    expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  });

  it("A2: an upgrade never paid grants nothing more; once its invoice is paid, the months after it grant the higher plan", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", interval: "year", amountPaid: 48_000 });
    await months(sub.userId, 1, 3);
    fx.stripe.prorationStatus = "open"; // a bank debit still processing
    expect((await changePlan(sub.userId, "pro", monthStart(3) + 15 * DAY)).json).toEqual({ status: "upgraded", plan: "pro", creditsAdded: 0 });
    const upgrade = latestInvoice(sub.subscriptionId);
    expect(await months(sub.userId, 4, 5)).toEqual([PLUS, PLUS]);
    fx.clock.value = (monthStart(5) + 10 * DAY) * 1000;
    expect((await fx.deliver(paidInvoiceEvent(fx, upgrade, { amountPaid: 30_000 }))).json.outcome).toBe("upgrade_topped_up");
    expect(await months(sub.userId, 6, 11)).toEqual(Array(6).fill(PRO));
  });

  it("A3: a downgrade (no money back) keeps granting the months already paid at the higher plan", async () => {
    const sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 120_000 });
    await months(sub.userId, 1, 3);
    expect((await changePlan(sub.userId, "plus", monthStart(3) + 15 * DAY)).json).toMatchObject({ status: "downgraded" });
    expect(((await fx.deps.ledger.store.getAccount(sub.userId)) as BillingAccount).plan).toBe("plus");
    expect(await months(sub.userId, 4, 11)).toEqual(Array(8).fill(PRO));
    expect(await balance(sub.userId)).toBe(SIGNUP + 12 * PRO);
  });

  it("A4: up → down → up within a year charges the rest-of-year difference once", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", interval: "year", amountPaid: 48_000 });
    await months(sub.userId, 1, 3);
    const first = await changePlan(sub.userId, "pro", monthStart(3) + 15 * DAY);
    expect(first.json.creditsAdded).toBeGreaterThan(0);
    await months(sub.userId, 4, 4); // the sweep on the 1st
    await changePlan(sub.userId, "plus", monthStart(4) + 10 * DAY);
    await months(sub.userId, 5, 5);
    const again = await changePlan(sub.userId, "pro", monthStart(5) + 10 * DAY);
    expect(again.json).toEqual({ status: "upgraded", plan: "pro", creditsAdded: 0 });
    const updates = fx.stripe.requestsTo(`/v1/subscriptions/${sub.subscriptionId}`, "POST");
    expect(updates.map((update) => update.body.proration_behavior)).toEqual(["always_invoice", "none", "none"]);
    expect(updates[2]?.body.items).toEqual([{ id: `si_${sub.subscriptionId}`, price: "price_pro_yearly" }]);
    // months 4..11 at pro (what the one paid upgrade bought), whichever plan was current
    await months(sub.userId, 6, 11);
    const scheduled = (await listHistory(fx.deps.ledger, { userId: sub.userId, limit: 100 })).entries
      .filter((entry) => entry.reason === "allowance")
      .sort((a, b) => Number(a.refs.period) - Number(b.refs.period));
    expect(scheduled.map((entry) => [entry.refs.period, entry.amount])).toEqual(
      Array.from({ length: 11 }, (_, index) => [index + 1, index + 1 <= 3 ? PLUS : PRO]),
    );
  });

  it("A5/A6: a refund of the annual invoice takes and withholds its own months only, never those an upgrade paid for", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", interval: "year", amountPaid: 48_000 });
    await months(sub.userId, 1, 3);
    await changePlan(sub.userId, "pro", monthStart(3) + 15 * DAY);
    expect(await months(sub.userId, 4, 5)).toEqual([PRO, PRO]);
    expect(await refundInvoice(sub.customer, sub.invoiceId, 48_000, 48_000, monthStart(5) + DAY)).toBe("clawed_back");
    // the annual invoice granted month 0 and months 1..5 at plus: exactly that is taken back
    const [refund] = (await listHistory(fx.deps.ledger, { userId: sub.userId, limit: 100 })).entries.filter((entry) => entry.reason === "refund");
    expect(refund?.amount).toBe(-6 * PLUS);
    // months 6..11 still grant what the upgrade paid for them: the difference
    expect(await months(sub.userId, 6, 11)).toEqual(Array(6).fill(PRO - PLUS));
    expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  });
});

describe("a refunded annual year binds its months whatever the order of events", () => {
  it("D1: refunded before the subscription made the account annual, the year grants none of its months", async () => {
    // subscribe, then Stripe's events in another order: invoice.paid, the full refund, and only then the checkout completion
    const userId = `d1-${uniqueStripeId("u")}`;
    expect((await fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/subscribe", { plan: "pro", interval: "year" })).status).toBe(200);
    const account = (await fx.deps.ledger.store.getAccount(userId)) as BillingAccount;
    const customer = account.stripeCustomerId as string;
    const subscriptionId = uniqueStripeId("sub");
    const invoiceId = uniqueStripeId("in");
    const paid = invoicePaid({ invoiceId, customer, subscriptionId, userId, price: "price_pro_yearly", amountPaid: 120_000, linePeriod: { start: T0, end: YEAR_2 } });
    expect((await fx.deliver(paid)).json.outcome).toBe("allowance_granted");
    expect(await refundInvoice(customer, invoiceId, 120_000, 120_000, T0 + 3_600)).toBe("clawed_back");
    const subscription = subscriptionObject({ id: subscriptionId, customer, price: "price_pro_yearly", userId, periodStart: T0, periodEnd: YEAR_2, latestInvoice: invoiceId });
    fx.stripe.subscriptions.set(subscriptionId, subscription);
    await fx.deliver(
      stripeEvent("checkout.session.completed.subscription", {
        object: { id: account.pendingCheckout?.sessionId, customer, subscription: subscriptionId, metadata: { userId, plan: "pro", interval: "year" } },
      }),
    );
    expect(await fx.deps.ledger.store.getAccount(userId)).toMatchObject({ plan: "pro", interval: "year", periodAnchor: T0 * 1000 });
    expect(await months(userId, 1, 11)).toEqual(Array(11).fill(0));
    expect(await balance(userId)).toBe(SIGNUP);
  });

  it("D2: a renewal refunded before its subscription update re-anchored the schedule grants none of the new year's months", async () => {
    const sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 120_000, periodEnd: YEAR_2 });
    await months(sub.userId, 1, 11);
    const renewal = uniqueStripeId("in");
    fx.clock.value = YEAR_2 * 1000;
    const paid = renewalPaid(sub, { invoiceId: renewal, start: YEAR_2, amountPaid: 120_000, created: YEAR_2 });
    expect((await fx.deliver(paid)).json.outcome).toBe("allowance_granted");
    expect(await refundInvoice(sub.customer, renewal, 120_000, 120_000, YEAR_2 + 3_600)).toBe("clawed_back");
    const renewed = subscriptionObject({
      id: sub.subscriptionId,
      customer: sub.customer,
      price: "price_pro_yearly",
      userId: sub.userId,
      periodStart: YEAR_2,
      periodEnd: YEAR_2 + 365 * DAY,
      latestInvoice: renewal,
    });
    fx.clock.value = (YEAR_2 + 7_200) * 1000;
    expect((await fx.deliver(stripeEvent("customer.subscription.updated", { created: YEAR_2 + 7_200, object: renewed }))).status).toBe(200);
    const before = await balance(sub.userId);
    expect(await months(sub.userId, 1, 3, YEAR_2)).toEqual([0, 0, 0]);
    expect(await balance(sub.userId)).toBe(before);
  });

  it("D4: a renewal still past due grants no months of the year nobody paid for; once paid, they come with it", async () => {
    const sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 120_000, periodEnd: YEAR_2 });
    await months(sub.userId, 1, 11);
    const renewal = uniqueStripeId("in");
    const pastDue = subscriptionObject({
      id: sub.subscriptionId,
      customer: sub.customer,
      price: "price_pro_yearly",
      userId: sub.userId,
      status: "past_due",
      periodStart: YEAR_2,
      periodEnd: YEAR_2 + 365 * DAY,
      latestInvoice: renewal,
    });
    fx.clock.value = (YEAR_2 + 60) * 1000;
    await fx.deliver(stripeEvent("customer.subscription.updated", { created: YEAR_2 + 60, object: pastDue }));
    expect(await fx.deps.ledger.store.getAccount(sub.userId)).toMatchObject({ plan: "pro", periodAnchor: YEAR_2 * 1000 });
    const before = await balance(sub.userId);
    expect(await months(sub.userId, 1, 1, YEAR_2)).toEqual([0]);
    expect(await balance(sub.userId)).toBe(before);
    // paid on Stripe's retry in month 1: the invoice grants month 0 and, with it, month 1 that
    // passed unpaid (the year's months are all granted once it is paid); month 2 from its share
    fx.clock.value = (monthStart(13) + 10 * DAY) * 1000;
    const paid = renewalPaid(sub, { invoiceId: renewal, start: YEAR_2, amountPaid: 120_000 });
    expect((await fx.deliver(paid)).json.outcome).toBe("allowance_granted");
    expect(await balance(sub.userId)).toBe(before + 2 * PRO);
    expect(await months(sub.userId, 2, 2, YEAR_2)).toEqual([PRO]);
    expect(await balance(sub.userId)).toBe(before + 3 * PRO);
    expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  });

  it("a refund of last year's invoice after the new year began takes back only what last year's invoice granted", async () => {
    const sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 120_000, periodEnd: YEAR_2 });
    await months(sub.userId, 1, 11);
    const renewal = uniqueStripeId("in");
    fx.clock.value = YEAR_2 * 1000;
    await fx.deliver(
      renewalPaid(sub, { invoiceId: renewal, start: YEAR_2, amountPaid: 120_000 }),
    );
    const renewed = subscriptionObject({ id: sub.subscriptionId, customer: sub.customer, price: "price_pro_yearly", userId: sub.userId, periodStart: YEAR_2, periodEnd: YEAR_2 + 365 * DAY, latestInvoice: renewal });
    await fx.deliver(stripeEvent("customer.subscription.updated", { created: YEAR_2 + 60, object: renewed }));
    expect(await months(sub.userId, 1, 2, YEAR_2)).toEqual([PRO, PRO]);
    // last year's invoice refunded in half: half of its twelve months, all granted, is taken back
    expect(await refundInvoice(sub.customer, sub.invoiceId, 120_000, 60_000, monthStart(14) + DAY)).toBe("clawed_back");
    const [refund] = (await listHistory(fx.deps.ledger, { userId: sub.userId, limit: 100 })).entries.filter((entry) => entry.reason === "refund");
    expect(refund?.amount).toBe(-6 * PRO);
    // and the new year's months are not bound by it
    expect(await months(sub.userId, 3, 3, YEAR_2)).toEqual([PRO]);
  });
});
