import { describe, expect, it } from "vitest";
import { listHistory } from "../../lib/ledger/index.js";
import {
  applySwitch,
  balanceOf,
  changePlanAt,
  creditedDowngrade,
  DAY,
  months as walkMonths,
  monthStart,
  PLUS,
  PRO,
  portalSwitch,
  prorationSwitch,
  refundInvoice as refundAt,
  YEAR, renewalPaid } from "../helpers/annual.js";
import { paidInvoiceEvent, subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";

/**
 * Red team (outside), commit 473128a "annual months grant what was paid for them". Each test
 * fails on 473128a and states the money effect. Plus is 40,000 credits a month, pro 100,000; the
 * year starts at T0 = 2026-01-01 12:00 UTC. Plus yearly costs 19,000 cents, pro yearly 49,000.
 */
captureLogs();
const fx = useBillingFixture();

const balance = (userId: string) => balanceOf(fx, userId);
const changePlan = (userId: string, plan: string, at: number) => changePlanAt(fx, userId, plan, at);
const months = (userId: string, from: number, to: number, yearStart = T0) => walkMonths(fx, userId, from, to, yearStart);
const refundInvoice = (customer: string, invoiceId: string, amount: number, refunded: number, at: number) =>
  refundAt(fx, customer, invoiceId, amount, refunded, at);

describe("red team: annual paid months", () => {
  it("R1: an annual upgrade made in the Stripe portal (a paid proration invoice) pays the rest of the year at the higher plan", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", interval: "year", amountPaid: 19_000 });
    expect(await months(sub.userId, 1, 3)).toEqual([PLUS, PLUS, PLUS]);
    // 16 April: plus -> pro in the portal (same period; Stripe invoices the prorated difference, paid)
    const at = monthStart(3) + 15 * DAY;
    const sw = prorationSwitch(sub, { at, price: "price_pro_yearly", oldPrice: "price_plus_yearly", credit: 13_000, fullPrice: 34_000 });
    await applySwitch(fx, sub, sw, at);
    expect(await fx.deps.ledger.store.getAccount(sub.userId)).toMatchObject({ plan: "pro", interval: "year" });
    // 21,000 cents paid for pro over the rest of the year: months 4..11 are paid at pro
    // (the code before 473128a granted them at the current plan, pro)
    expect(await months(sub.userId, 4, 11)).toEqual(Array(8).fill(PRO)); // actual: 8 x PLUS (480,000 credits paid for, never granted)
  });

  it("R2: a third annual anchor in one year keeps the first invoice's share; its refund takes what it granted, not the whole year", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", interval: "year", amountPaid: 19_000 });
    expect(await months(sub.userId, 1, 2)).toEqual([PLUS, PLUS]);
    // invoice A granted month 0 and months 1, 2: 120,000 credits. Then annual -> monthly -> annual -> monthly -> annual in the portal.
    const a1 = monthStart(2) + 9 * DAY;
    await applySwitch(fx, sub, portalSwitch(sub, { at: a1, price: "price_plus_monthly", periodEnd: a1 + 31 * DAY, oldPrice: "price_plus_yearly", credit: 15_000, fullPrice: 1_900 }), a1);
    const a2 = a1 + 10 * DAY;
    await applySwitch(fx, sub, portalSwitch(sub, { at: a2, price: "price_plus_yearly", periodEnd: a2 + YEAR, oldPrice: "price_plus_monthly", credit: 1_200, fullPrice: 19_000 }), a2);
    const a3 = a2 + 10 * DAY;
    await applySwitch(fx, sub, portalSwitch(sub, { at: a3, price: "price_plus_monthly", periodEnd: a3 + 31 * DAY, oldPrice: "price_plus_yearly", credit: 18_000, fullPrice: 1_900 }), a3);
    const a4 = a3 + 10 * DAY;
    await applySwitch(fx, sub, portalSwitch(sub, { at: a4, price: "price_plus_yearly", periodEnd: a4 + YEAR, oldPrice: "price_plus_monthly", credit: 1_200, fullPrice: 19_000 }), a4);
    const before = await balance(sub.userId);
    // the first annual invoice is refunded in full (or charged back)
    expect(await refundInvoice(sub.customer, sub.invoiceId, 19_000, 19_000, a4 + DAY)).toBe("clawed_back");
    const [refund] = (await listHistory(fx.deps.ledger, { userId: sub.userId, limit: 100 })).entries.filter((entry) => entry.reason === "refund");
    expect(refund?.amount).toBe(-3 * PLUS); // actual: -480,000 (12 months taken, 9 of them never granted)
    expect(before - (await balance(sub.userId))).toBe(3 * PLUS);
  });

  it("R3: an annual upgrade whose invoice is paid two months late grants, with the payment, the difference for the months that passed meanwhile", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", interval: "year", amountPaid: 19_000 });
    await months(sub.userId, 1, 3);
    fx.stripe.prorationStatus = "open"; // a bank debit still processing
    expect((await changePlan(sub.userId, "pro", monthStart(3) + 15 * DAY)).json).toMatchObject({ status: "upgraded", creditsAdded: 0 });
    const upgrade = fx.stripe.subscriptions.get(sub.subscriptionId)?.latest_invoice as string;
    expect(await months(sub.userId, 4, 5)).toEqual([PLUS, PLUS]);
    const start = await balance(sub.userId);
    fx.clock.value = (monthStart(5) + 10 * DAY) * 1000;
    expect((await fx.deliver(paidInvoiceEvent(fx, upgrade, { amountPaid: 21_000 }))).json.outcome).toBe("upgrade_topped_up");
    const topUp = (await balance(sub.userId)) - start;
    await months(sub.userId, 6, 11);
    // the payment bought its top-up and the difference for months 4..11 (its purchase says so)
    const purchase = await fx.billing.store.getPurchase(upgrade);
    expect(purchase?.share).toMatchObject({ fromMonth: 4, monthly: PRO - PLUS });
    // with the payment: April's top-up (half of April: 30,000) and the difference for months 4 and 5,
    // granted at plus before the payment landed; then months 6..11 at plus + the difference
    expect(topUp).toBe(30_000 + 2 * (PRO - PLUS));
    expect((await balance(sub.userId)) - start).toBe(30_000 + 2 * (PRO - PLUS) + 6 * PRO); // before the fix: 30,000 + 6 x PRO (2 x 60,000 paid for, never granted)
  });

  it("R4: a portal downgrade that credits the difference back lowers the later months, and an upgrade back is charged again", async () => {
    const sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 49_000 });
    expect(await months(sub.userId, 1, 1)).toEqual([PRO]);
    // 11 February: pro -> plus in the portal, prorated: Stripe credits the unused difference (a credit
    // invoice, nothing to pay; the credit goes to the customer's balance for the next invoices)
    const at = monthStart(1) + 10 * DAY;
    const down = creditedDowngrade(sub, at, { credit: 26_700, fullPrice: 0 });
    await applySwitch(fx, sub, down, at);
    expect(await fx.deps.ledger.store.getAccount(sub.userId)).toMatchObject({ plan: "plus" });
    // months 2..11 were paid at plus now (the pro difference went back as credit)
    expect.soft(await months(sub.userId, 2, 2)).toEqual([PLUS]); // actual: [PRO]
    // and an upgrade back to pro must be charged again
    const again = await changePlan(sub.userId, "pro", monthStart(2) + 2 * DAY);
    expect(again.status).toBe(200);
    const updates = fx.stripe.requestsTo(`/v1/subscriptions/${sub.subscriptionId}`, "POST");
    expect.soft(updates.map((update) => update.body.proration_behavior)).toEqual(["always_invoice"]); // actual: ["none"]: pro for free, credit kept
  });

  it("R5: a renewal whose plan line starts one second off the subscription's period start still pays its year's months", async () => {
    const YEAR_2 = monthStart(12);
    const sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 49_000, periodEnd: YEAR_2 });
    const renewal = uniqueStripeId("in");
    fx.clock.value = YEAR_2 * 1000;
    const paid = renewalPaid(sub, { invoiceId: renewal, start: YEAR_2 + 1, amountPaid: 49_000 });
    expect((await fx.deliver(paid)).json.outcome).toBe("allowance_granted");
    const renewed = subscriptionObject({ id: sub.subscriptionId, customer: sub.customer, price: "price_pro_yearly", userId: sub.userId, periodStart: YEAR_2, periodEnd: YEAR_2 + YEAR, latestInvoice: renewal });
    fx.clock.value = (YEAR_2 + 60) * 1000;
    expect((await fx.deliver(stripeEvent("customer.subscription.updated", { created: YEAR_2 + 60, object: renewed }))).status).toBe(200);
    expect(await months(sub.userId, 1, 3, YEAR_2)).toEqual([PRO, PRO, PRO]); // actual: [0, 0, 0] (the whole paid year's months 1..11 lost)
  });
});
