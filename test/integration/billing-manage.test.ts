import { describe, expect, it } from "vitest";
import { type BillingAccount, changePlan as changePlanUseCase } from "../../lib/billing/index.js";
import { auditAccount, getBalance, grantAllowanceIfDue, listHistory } from "../../lib/ledger/index.js";
import {
  paidInvoiceEvent,
  type Subscriber,
  subscribeAndPay,
  subscriberInvoicePaid,
  T0,
  useBillingFixture,
} from "../helpers/billing.js";
import { httpHandler } from "../../lib/http/stack.js";
import { invoke } from "../helpers/events.js";
import { itemsOf } from "../helpers/http.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";
import { userToken } from "../helpers/tokens.js";

captureLogs();
const fx = useBillingFixture();

const changePlan = (userId: string, body: unknown) => fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/change-plan", body);
const cancel = (userId: string) => fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/cancel");
const account = async (userId: string) => (await fx.deps.ledger.store.getAccount(userId)) as BillingAccount;
const balance = async (userId: string) => (await getBalance(fx.deps.ledger, userId)).balance;

/** The user switched price in the Stripe portal (same period, no new invoice): Stripe's copy changes, ours not yet. */
function switchedInPortal(sub: Subscriber, price: string) {
  const switched = subscriptionObject({
    id: sub.subscriptionId,
    customer: sub.customer,
    price,
    userId: sub.userId,
    periodStart: T0,
    periodEnd: T0 + 31 * 86_400,
    latestInvoice: sub.invoiceId,
  });
  fx.stripe.subscriptions.set(sub.subscriptionId, switched);
  return switched;
}

const HOUR = 3_600;
const DAY = 86_400;
/** A 30-day monthly period from T0: its last hour is 1/720 of it. */
const MONTH_END = T0 + 30 * DAY;

/** Our clock (the proration instant change-plan sends Stripe) at `seconds`, for this test only (useBillingFixture puts it back). */
function clockAt(seconds: number) {
  fx.clock.value = seconds * 1000;
}

/** The proration invoice the last change-plan made (the test Stripe server's copy). */
const latestInvoice = (sub: Subscriber) => {
  const id = fx.stripe.subscriptions.get(sub.subscriptionId)?.latest_invoice as string;
  return { id, invoice: fx.stripe.invoices.get(id) as { amount_paid: number; lines: { data: { period: { start: number } }[] } } };
};

const upgradeEntries = async (userId: string) =>
  (await listHistory(fx.deps.ledger, { userId, limit: 100 })).entries.filter((entry) => entry.reason === "upgrade");

describe("POST /v1/billing/change-plan", () => {
  it("upgrades with an always-invoiced proration from an explicit instant and tops up for that proration invoice", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus" });
    expect(await balance(sub.userId)).toBe(50_000);
    // at the very start of the period: the whole difference (plus 40,000 → pro 100,000)
    const res = await changePlan(sub.userId, { plan: "pro" });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ status: "upgraded", plan: "pro", creditsAdded: 60_000 });

    const [retrieve] = fx.stripe.requestsTo(`/v1/subscriptions/${sub.subscriptionId}`, "GET");
    expect(retrieve).toBeDefined();
    const [update] = fx.stripe.requestsTo(`/v1/subscriptions/${sub.subscriptionId}`, "POST");
    expect(update?.body).toEqual({
      items: [{ id: `si_${sub.subscriptionId}`, price: "price_pro_monthly" }],
      expand: ["latest_invoice"],
      proration_behavior: "always_invoice",
      payment_behavior: "error_if_incomplete",
      proration_date: String(T0),
      metadata: {
        userId: sub.userId,
        plan: "pro",
        interval: "month",
        upgradeFrom: "plus",
        upgradeAt: String(T0),
        upgradePeriodStart: String(T0),
        upgradePeriodEnd: String(T0 + 31 * DAY),
        upgradeYearStart: "", // monthly plans: no year to pay the rest of
      },
    });
    expect(update?.idempotencyKey).toMatch(
      new RegExp(`^creditgate:change-plan:${sub.subscriptionId}:price_pro_monthly:${sub.invoiceId}:\\d+:\\d+:[0-9a-f]{16}$`),
    );

    const stored = await account(sub.userId);
    expect(stored).toMatchObject({ plan: "pro", balance: 110_000, subscription: { priceId: "price_pro_monthly" } });
    const proration = latestInvoice(sub);
    expect(proration.invoice.amount_paid).toBe(3_000); // the whole price difference, 49 − 19 dollars
    const [entry] = (await listHistory(fx.deps.ledger, { userId: sub.userId })).entries;
    expect(entry).toMatchObject({ key: `upgrade#${proration.id}`, amount: 60_000, reason: "upgrade", refs: { invoice: proration.id, at: T0 } });
    // what the invoice bought, so a refund of it takes the top-up back
    expect(await fx.billing.store.getPurchase(proration.id)).toMatchObject({
      userId: sub.userId,
      credits: 60_000,
      grantKey: `upgrade#${proration.id}`,
      amountCents: 3_000,
    });
  });

  it("in the first minute of the period tops up almost the whole difference", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", periodEnd: MONTH_END });
    clockAt(T0 + 60);
    const res = await changePlan(sub.userId, { plan: "pro" });
    // floor(60,000 × (30 days − 60 s) / 30 days) = floor(59,998.6)
    expect(res.json).toEqual({ status: "upgraded", plan: "pro", creditsAdded: 59_998 });
    const [update] = fx.stripe.requestsTo(`/v1/subscriptions/${sub.subscriptionId}`, "POST");
    expect(update?.body).toMatchObject({ proration_date: String(T0 + 60), metadata: { upgradeAt: String(T0 + 60), upgradePeriodEnd: String(MONTH_END) } });
    // Stripe prorated the price from the same instant: its lines start there
    const { invoice } = latestInvoice(sub);
    expect(invoice.lines.data.map((line) => line.period.start)).toEqual([T0 + 60, T0 + 60]);
    expect(invoice.amount_paid).toBe(3_000);
    expect(await balance(sub.userId)).toBe(50_000 + 59_998);
  });

  it("two hours before renewal tops up two hours' worth, not a month's (regression: it gave 60,000 for cents)", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", periodEnd: MONTH_END });
    clockAt(MONTH_END - 2 * HOUR);
    const upgraded = await changePlan(sub.userId, { plan: "pro" });
    // floor(60,000 × 2 h / 720 h) = floor(166.7); Stripe charged the price difference for the same 2 h
    expect(upgraded.json).toEqual({ status: "upgraded", plan: "pro", creditsAdded: 166 });
    expect(latestInvoice(sub).invoice.amount_paid).toBe(9); // round(4,900 / 360) − round(1,900 / 360) cents
    // Downgrading straight back keeps the renewal at the plus price and only the 166 credits paid for.
    expect((await changePlan(sub.userId, { plan: "plus" })).json).toEqual({ status: "downgraded", plan: "plus", creditsAdded: 0 });
    expect(await balance(sub.userId)).toBe(50_000 + 166);
    expect((await upgradeEntries(sub.userId)).map((entry) => entry.amount)).toEqual([166]);
  });

  it("in the last hour tops up the difference / 720 of a 30-day month", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", periodEnd: MONTH_END });
    clockAt(MONTH_END - HOUR);
    expect((await changePlan(sub.userId, { plan: "pro" })).json).toEqual({ status: "upgraded", plan: "pro", creditsAdded: 83 });
    expect(await balance(sub.userId)).toBe(50_000 + 83);
  });

  // Regression (outside review, this round): at the very end of the period we know of, change-plan
  // changed the price in Stripe, then failed with 500 (an empty proration period), so a retry saw SAME_PLAN.
  it("at the end of the period we know of (renewal under way): a retryable 409 before Stripe is called", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", interval: "year" });
    clockAt(T0 + 365 * DAY);
    const res = await changePlan(sub.userId, { plan: "pro" });
    expect(res.status).toBe(409);
    expect(res.json.error).toMatchObject({ code: "CONFLICT", reason: "PERIOD_RENEWING", retryable: true });
    expect(fx.stripe.requestsTo(`/v1/subscriptions/${sub.subscriptionId}`, "POST")).toHaveLength(0);
    expect(await account(sub.userId)).toMatchObject({ plan: "plus" });
  });

  it("annual plans mid-month: the difference for what is left of the allowance month, the later months from the schedule", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", interval: "year" });
    expect(await balance(sub.userId)).toBe(50_000); // signup + month 0
    // Allowance month 3 runs from 1 April to 1 May (30 days), anchored at the subscription's start
    // (1 January, 12:00); the upgrade is in its middle.
    const april = Date.UTC(2026, 3, 1, 12) / 1000;
    const may = Date.UTC(2026, 4, 1, 12) / 1000;
    clockAt(april + 15 * DAY);
    const res = await changePlan(sub.userId, { plan: "pro" });
    // half of month 3's difference; months 4..11 come from the schedule at pro's allowance
    expect(res.json).toEqual({ status: "upgraded", plan: "pro", creditsAdded: 30_000 });
    const [update] = fx.stripe.requestsTo(`/v1/subscriptions/${sub.subscriptionId}`, "POST");
    expect(update?.body).toMatchObject({
      items: [{ price: "price_pro_yearly" }],
      proration_date: String(april + 15 * DAY),
      metadata: { interval: "year", upgradeAt: String(april + 15 * DAY), upgradePeriodStart: String(april), upgradePeriodEnd: String(may) },
    });
    // Months 1..3 were granted at plus (due and not granted yet: nothing ran since January, and
    // the year's months were paid, so the missed ones are granted too) before the plan changed, so
    // the schedule cannot grant month 3 again at pro on top of the top-up.
    const allowances = (await listHistory(fx.deps.ledger, { userId: sub.userId, limit: 100 })).entries.filter((e) => e.reason === "allowance");
    const monthKey = (month: number) => `allowance#${new Date(Date.UTC(2026, month, 1, 12)).toISOString()}`;
    expect(allowances.map((entry) => [entry.key, entry.amount]).sort()).toEqual([
      [monthKey(1), 40_000],
      [monthKey(2), 40_000],
      [`allowance#${new Date(april * 1000).toISOString()}`, 40_000],
    ]);
    expect(await account(sub.userId)).toMatchObject({ plan: "pro", interval: "year", periodAnchor: T0 * 1000 });
    expect(await balance(sub.userId)).toBe(50_000 + 3 * 40_000 + 30_000);
    // asked again later in month 3, the schedule (now at pro) grants nothing more for it
    await grantAllowanceIfDue(fx.deps.ledger, sub.userId);
    expect(await balance(sub.userId)).toBe(200_000);
    // Month 4 is granted at pro's allowance.
    fx.clock.value = (may + 60) * 1000;
    await grantAllowanceIfDue(fx.deps.ledger, sub.userId);
    expect(await balance(sub.userId)).toBe(200_000 + 100_000);
  });

  it("upgrade → downgrade → upgrade in one period: two paid proration invoices, two prorated top-ups", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", periodEnd: MONTH_END });
    clockAt(T0 + 10 * DAY);
    expect((await changePlan(sub.userId, { plan: "pro" })).json).toEqual({ status: "upgraded", plan: "pro", creditsAdded: 40_000 });
    const first = latestInvoice(sub);
    fx.clock.value = (T0 + 20 * DAY) * 1000;
    expect((await changePlan(sub.userId, { plan: "plus" })).json).toEqual({ status: "downgraded", plan: "plus", creditsAdded: 0 });
    fx.clock.value = (T0 + 25 * DAY) * 1000;
    // Stripe charges the proration again (the downgrade credited nothing back): a top-up of its own
    expect((await changePlan(sub.userId, { plan: "pro" })).json).toEqual({ status: "upgraded", plan: "pro", creditsAdded: 10_000 });
    const second = latestInvoice(sub);
    expect(second.id).not.toBe(first.id);
    const entries = await upgradeEntries(sub.userId);
    expect(entries.map((entry) => [entry.key, entry.amount]).sort()).toEqual(
      [
        [`upgrade#${first.id}`, 40_000],
        [`upgrade#${second.id}`, 10_000],
      ].sort(),
    );
    // Credits follow the cents: each invoice's top-up is its share of a whole month's difference
    // (60,000 credits for 3,000 cents), to within a cent of Stripe's rounding — never more.
    for (const [{ invoice }, credits] of [
      [first, 40_000],
      [second, 10_000],
    ] as const) {
      expect(invoice.amount_paid).toBeGreaterThan(0);
      expect(Math.abs(credits / 60_000 - invoice.amount_paid / 3_000)).toBeLessThanOrEqual(1 / 3_000);
    }
    expect(await balance(sub.userId)).toBe(50_000 + 40_000 + 10_000);
  });

  it("answers 503 STRIPE_NOT_CONFIGURED without a secret key, calls nothing and writes nothing", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus" });
    fx.stripe.reset();
    const items = await itemsOf(fx.client, fx.tableName, sub.userId);
    const unconfigured = httpHandler(fx.fns.subscribe.route, { ...fx.deps, billing: { ...fx.billing, stripe: undefined } });
    const token = await userToken(sub.userId);
    for (const [routeKey, body] of [
      ["POST /v1/billing/change-plan", { plan: "pro" }],
      ["POST /v1/billing/cancel", undefined],
    ] as const) {
      const res = await invoke(unconfigured, { routeKey, token, ...(body ? { body } : {}) });
      expect(res.status, routeKey).toBe(503);
      expect(res.json.error, routeKey).toMatchObject({ code: "STRIPE_NOT_CONFIGURED" });
      expect(res.json.error.message, routeKey).toContain("STRIPE_SECRET_KEY");
    }
    expect(await itemsOf(fx.client, fx.tableName, sub.userId)).toEqual(items);
    expect(fx.stripe.requests).toHaveLength(0);
  });

  it("downgrades without taking credits back and without an immediate invoice", async () => {
    const sub = await subscribeAndPay(fx, { plan: "pro" });
    const res = await changePlan(sub.userId, { plan: "plus" });
    expect(res.json).toEqual({ status: "downgraded", plan: "plus", creditsAdded: 0 });
    const [update] = fx.stripe.requestsTo(`/v1/subscriptions/${sub.subscriptionId}`, "POST");
    expect(update?.body).toMatchObject({ proration_behavior: "none", items: [{ price: "price_plus_monthly" }] });
    expect(update?.body.payment_behavior).toBeUndefined();
    expect(await account(sub.userId)).toMatchObject({ plan: "plus", balance: 110_000 });
  });

  it("the same change repeated after a switch made elsewhere (the portal) is a new Stripe request, not a replay", async () => {
    const sub = await subscribeAndPay(fx, { plan: "pro" });
    expect((await changePlan(sub.userId, { plan: "plus" })).json).toMatchObject({ status: "downgraded", plan: "plus" });
    // The user switches back to pro in the Stripe portal: no new invoice, one subscription.updated.
    const back = switchedInPortal(sub, "price_pro_monthly");
    const switched = stripeEvent("customer.subscription.updated", { created: Math.floor(Date.now() / 1000) + 60, object: back });
    expect((await fx.deliver(switched)).status).toBe(200);
    expect(await account(sub.userId)).toMatchObject({ plan: "pro" });

    expect((await changePlan(sub.userId, { plan: "plus" })).json).toMatchObject({ status: "downgraded", plan: "plus" });
    expectAppliedUnderANewKey(sub.subscriptionId);
  });

  /** Two updates of the subscription under two keys, and Stripe on plus: a replayed answer would have left it on pro. */
  function expectAppliedUnderANewKey(subscriptionId: string) {
    const updates = fx.stripe.requestsTo(`/v1/subscriptions/${subscriptionId}`, "POST");
    expect(updates).toHaveLength(2);
    expect(updates[1]?.idempotencyKey).not.toBe(updates[0]?.idempotencyKey);
    const remote = fx.stripe.subscriptions.get(subscriptionId) as { items: { data: { price: { id: string } }[] } };
    expect(remote.items.data[0]?.price.id).toBe("price_plus_monthly");
  }

  it("a downgrade Stripe answered 500 (an answer Stripe keeps for its key for 24 hours): the retry a second later is a new request, and applies", async () => {
    const sub = await subscribeAndPay(fx, { plan: "pro" });
    fx.stripe.failNext({ match: "/v1/subscriptions/", method: "POST", status: 500, keep: true });
    expect((await changePlan(sub.userId, { plan: "plus" })).status).toBe(502);
    fx.clock.value += 1_000;
    expect((await changePlan(sub.userId, { plan: "plus" })).json).toMatchObject({ status: "downgraded", plan: "plus" });
    expectAppliedUnderANewKey(sub.subscriptionId);
  });

  it("a declined upgrade answers 402 PAYMENT_FAILED and changes nothing", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus" });
    fx.stripe.failNext({
      match: "/v1/subscriptions/",
      method: "POST",
      status: 402,
      body: { error: { type: "card_error", code: "card_declined", decline_code: "insufficient_funds", message: "Your card was declined." } },
    });
    const declined = await changePlan(sub.userId, { plan: "pro" });
    expect(declined.status).toBe(402);
    expect(declined.json.error.code).toBe("PAYMENT_FAILED");
    expect(await account(sub.userId)).toMatchObject({ plan: "plus", balance: 50_000, subscription: { priceId: "price_plus_monthly" } });
    expect(await upgradeEntries(sub.userId)).toEqual([]);
  });

  it("a double click a second apart: Stripe prorates once and the one proration invoice gets the only top-up", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", periodEnd: MONTH_END });
    // Both requests read the subscription (still plus) before either updates it; their instants
    // differ by a second, so their updates are two Stripe requests: the later one changes nothing.
    const stripe = fx.billing.stripe as NonNullable<typeof fx.billing.stripe>;
    let reads = 0;
    let bothRead: () => void = () => {};
    const barrier = new Promise<void>((resolve) => {
      bothRead = resolve;
    });
    const port = {
      ...stripe,
      retrieveSubscription: async (id: string) => {
        const remote = await stripe.retrieveSubscription(id);
        if (++reads === 2) bothRead();
        await barrier;
        return remote;
      },
    };
    const at = (seconds: number) => ({ ...fx.billing, stripe: port, ledger: { ...fx.billing.ledger, now: () => seconds * 1000 } });
    const results = await Promise.all([
      changePlanUseCase(at(T0 + 6 * DAY), { userId: sub.userId, plan: "pro" }),
      changePlanUseCase(at(T0 + 6 * DAY + 1), { userId: sub.userId, plan: "pro" }),
    ]);
    const updates = fx.stripe.requestsTo(`/v1/subscriptions/${sub.subscriptionId}`, "POST");
    expect(updates).toHaveLength(2);
    expect(updates[0]?.idempotencyKey).not.toBe(updates[1]?.idempotencyKey);
    const entries = await upgradeEntries(sub.userId);
    expect(entries).toHaveLength(1);
    const [entry] = entries;
    const charged = [...fx.stripe.invoices.values()].filter(
      (invoice) =>
        (invoice.parent as { subscription_details: { subscription: string } }).subscription_details.subscription === sub.subscriptionId &&
        (invoice.amount_paid as number) > 0,
    );
    expect(charged.map((invoice) => invoice.id)).toEqual([entry?.refs.invoice]);
    // floor(60,000 × 24 days / 30 days), or one second less of it
    expect([48_000, 47_999]).toContain(entry?.amount);
    expect(results.map((result) => result.creditsAdded).sort((a, b) => a - b)).toEqual([0, entry?.amount]);
    expect(await balance(sub.userId)).toBe(50_000 + (entry?.amount ?? 0));
  });

  it("a crash after Stripe upgraded is finished by the proration invoice's invoice.paid: the same amount, once", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", periodEnd: MONTH_END });
    clockAt(T0 + 12 * DAY);
    // The function dies at its first ledger write after Stripe upgraded (before the top-up).
    const ledger = fx.billing.ledger;
    fx.billing.ledger = { ...ledger, store: { ...ledger.store, commit: async () => Promise.reject(new Error("killed")) } };
    let crashed: Awaited<ReturnType<typeof changePlan>>;
    try {
      crashed = await changePlan(sub.userId, { plan: "pro" });
    } finally {
      fx.billing.ledger = ledger;
    }
    expect(crashed.status).toBe(500);
    expect(await balance(sub.userId)).toBe(50_000);
    const proration = latestInvoice(sub);
    expect(proration.id).not.toBe(sub.invoiceId);

    // Stripe delivers the proration invoice's invoice.paid: the metadata snapshot on it carries the terms.
    const paid = paidInvoiceEvent(fx, proration.id);
    expect(paid.data.object.parent.subscription_details.metadata).toMatchObject({
      upgradeFrom: "plus",
      upgradeAt: String(T0 + 12 * DAY),
      upgradePeriodStart: String(T0),
      upgradePeriodEnd: String(MONTH_END),
    });
    const res = await fx.deliver(paid);
    expect(res.json.outcome).toBe("upgrade_topped_up");
    // floor(60,000 × 18 / 30): exactly what change-plan would have granted
    expect(await balance(sub.userId)).toBe(50_000 + 36_000);
    // the same invoice reported again (another event id) grants nothing more
    expect((await fx.deliver({ ...paid, id: uniqueStripeId("evt") })).json.outcome).toBe("upgrade_already_topped_up");
    // and the user's retry finds the subscription already on pro
    const retried = await changePlan(sub.userId, { plan: "pro" });
    expect(retried.json.error.reason).toBe("SAME_PLAN");
    expect((await upgradeEntries(sub.userId)).map((entry) => [entry.key, entry.amount])).toEqual([[`upgrade#${proration.id}`, 36_000]]);
    expect(await fx.billing.store.getPurchase(proration.id)).toMatchObject({ credits: 36_000, amountCents: proration.invoice.amount_paid });
  });

  it("the proration invoice's invoice.paid after change-plan granted computes the same amount and grants nothing more", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", periodEnd: MONTH_END });
    clockAt(T0 + 7 * DAY + 5 * HOUR);
    const res = await changePlan(sub.userId, { plan: "pro" });
    // floor(60,000 × (22 days 19 h) / 30 days) = floor(45,583.3)
    expect(res.json.creditsAdded).toBe(45_583);
    const backstop = await fx.deliver(paidInvoiceEvent(fx, latestInvoice(sub).id));
    expect(backstop.json.outcome).toBe("upgrade_already_topped_up");
    expect(await balance(sub.userId)).toBe(50_000 + 45_583);
  });

  it("portal switches are priced from their proration invoices' lines: upgrade, credited downgrade, upgrade again net what was paid", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", periodEnd: MONTH_END });
    clockAt(T0 + 5 * DAY);
    expect((await changePlan(sub.userId, { plan: "pro" })).json.creditsAdded).toBe(50_000); // 25 of 30 days
    // In the portal the user went down to plus (Stripe credited the 21 days left) and up to pro again
    // (Stripe charged the 18 days left). Both invoices carry the subscription's metadata, which still
    // names our upgrade, but their lines start later: they are priced from their own lines.
    const portal = (at: number, from: string, to: string) =>
      subscriberInvoicePaid(sub, {
        price: to,
        billingReason: "subscription_update",
        amountPaid: 0,
        metadata: { plan: "pro", interval: "month", upgradeFrom: "plus", upgradeAt: String(T0 + 5 * DAY), upgradePeriodStart: String(T0), upgradePeriodEnd: String(MONTH_END) },
        lines: [
          { price: from, proration: true, amount: -1_000, period: { start: at, end: MONTH_END } },
          { price: to, proration: true, amount: 400, period: { start: at, end: MONTH_END } },
        ],
      });
    const down = portal(T0 + 9 * DAY, "price_pro_monthly", "price_plus_monthly");
    expect((await fx.deliver(down)).json.outcome).toBe("downgrade_credit_recorded");
    expect(await balance(sub.userId)).toBe(100_000 - 42_000); // 60,000 × 21/30 taken back
    const up = portal(T0 + 12 * DAY, "price_plus_monthly", "price_pro_monthly");
    expect((await fx.deliver(up)).json.outcome).toBe("upgrade_topped_up");
    expect(await balance(sub.userId)).toBe(100_000 - 42_000 + 36_000); // 60,000 × 18/30
    // redelivered (new event ids): once each
    for (const event of [down, up]) expect((await fx.deliver({ ...event, id: uniqueStripeId("evt") })).json.outcome).toMatch(/already/);
    expect(await balance(sub.userId)).toBe(94_000);
    expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
    // metadata from before the terms carried the instant is no upgrade we can price either
    const legacy = await fx.deliver(
      subscriberInvoicePaid(sub, {
        price: "price_pro_monthly",
        billingReason: "subscription_update",
        proration: true,
        metadata: { plan: "pro", interval: "month", upgradeFrom: "plus", upgradePeriodStart: String(T0) },
      }),
    );
    expect(legacy.json.outcome).toBe("ignored_billing_reason");
    expect(await balance(sub.userId)).toBe(94_000);
  });

  it("an upgrade whose invoice is still being paid (bank debit) tops up only when invoice.paid says what was paid", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", periodEnd: MONTH_END });
    clockAt(T0 + 15 * DAY);
    fx.stripe.prorationStatus = "open";
    const res = await changePlan(sub.userId, { plan: "pro" });
    expect(res.json).toEqual({ status: "upgraded", plan: "pro", creditsAdded: 0 });
    expect(await balance(sub.userId)).toBe(50_000);
    const proration = latestInvoice(sub);
    const paid = await fx.deliver(paidInvoiceEvent(fx, proration.id, { amountPaid: 1_500 }));
    expect(paid.json.outcome).toBe("upgrade_topped_up");
    expect(await balance(sub.userId)).toBe(50_000 + 30_000);
    // its purchase records what was really paid: a dispute of the whole payment takes the whole top-up
    const paymentIntent = uniqueStripeId("pi");
    fx.stripe.invoicePayments.set(paymentIntent, proration.id);
    const disputed = await fx.deliver(
      stripeEvent("charge.dispute.created", {
        object: { id: uniqueStripeId("dp"), charge: uniqueStripeId("ch"), payment_intent: paymentIntent, amount: 1_500 },
      }),
    );
    expect(disputed.json.outcome).toBe("clawed_back");
    expect(await balance(sub.userId)).toBe(50_000);
  });

  it("refunding the proration invoice takes back the top-up proportionally", async () => {
    fx.stripe.prorationAmount = 1_500;
    const sub = await subscribeAndPay(fx, { plan: "plus" });
    expect((await changePlan(sub.userId, { plan: "pro" })).json.creditsAdded).toBe(60_000);
    const prorationInvoice = fx.stripe.subscriptions.get(sub.subscriptionId)?.latest_invoice as string;
    expect(prorationInvoice).not.toBe(sub.invoiceId);
    const paymentIntent = uniqueStripeId("pi");
    fx.stripe.invoicePayments.set(paymentIntent, prorationInvoice);
    const res = await fx.deliver(
      stripeEvent("charge.refunded", {
        object: { id: uniqueStripeId("ch"), payment_intent: paymentIntent, customer: sub.customer, amount: 1_500, amount_refunded: 750 },
      }),
    );
    expect(res.json.outcome).toBe("clawed_back");
    expect(await balance(sub.userId)).toBe(110_000 - 30_000);
  });

  it("takes the plan changed from from Stripe, not our copy: a portal switch in flight is no upgrade", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus" });
    // The user moved to pro in the portal; its webhook has not reached us (our copy still says plus).
    switchedInPortal(sub, "price_pro_monthly");
    const res = await changePlan(sub.userId, { plan: "pro" });
    expect(res.status).toBe(409);
    expect(res.json.error.reason).toBe("SAME_PLAN");
    expect(fx.stripe.requestsTo(`/v1/subscriptions/${sub.subscriptionId}`, "POST")).toHaveLength(0);
    expect(await balance(sub.userId)).toBe(50_000); // no top-up
  });

  it("upgrade then downgrade in one period: the downgrade credits no money back and the top-up stays paid for", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus" });
    expect((await changePlan(sub.userId, { plan: "pro" })).json).toMatchObject({ status: "upgraded", creditsAdded: 60_000 });
    expect((await changePlan(sub.userId, { plan: "plus" })).json).toMatchObject({ status: "downgraded", creditsAdded: 0 });
    const [upgrade, downgrade] = fx.stripe.requestsTo(`/v1/subscriptions/${sub.subscriptionId}`, "POST");
    expect(upgrade?.body.proration_behavior).toBe("always_invoice");
    expect(downgrade?.body.proration_behavior).toBe("none"); // no credit note for the pro time just paid
    expect(await balance(sub.userId)).toBe(110_000);
  });

  it("refuses without a live subscription, for the same plan, and for free", async () => {
    const free = await changePlan(uniqueUser("free"), { plan: "pro" });
    expect(free.status).toBe(409);
    expect(free.json.error).toMatchObject({ code: "CONFLICT", reason: "NO_SUBSCRIPTION" });
    const sub = await subscribeAndPay(fx, { plan: "pro" });
    const same = await changePlan(sub.userId, { plan: "pro" });
    expect(same.status).toBe(409);
    expect(same.json.error.reason).toBe("SAME_PLAN");
    const toFree = await changePlan(sub.userId, { plan: "free" });
    expect(toFree.status).toBe(400);
    expect(toFree.json.error.field).toBe("plan");
    expect(fx.stripe.requestsTo("/v1/subscriptions/", "POST")).toHaveLength(0);
  });
});

describe("POST /v1/billing/cancel", () => {
  it("free users get a clear answer and no Stripe call", async () => {
    const res = await cancel(uniqueUser("free"));
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ status: "already_free", effectiveAt: null, message: expect.stringContaining("free plan") });
    expect(fx.stripe.requests).toHaveLength(0);
  });

  it("cancels at period end, keeps the plan until Stripe deletes the subscription", async () => {
    const sub = await subscribeAndPay(fx);
    const res = await cancel(sub.userId);
    expect(res.json).toEqual({ status: "scheduled_cancel", effectiveAt: new Date((T0 + 31 * 86_400) * 1000).toISOString() });
    const [update] = fx.stripe.requestsTo(`/v1/subscriptions/${sub.subscriptionId}`, "POST");
    expect(update?.body).toEqual({ cancel_at_period_end: "true" });
    expect(update?.idempotencyKey).toMatch(new RegExp(`^creditgate:cancel:${sub.subscriptionId}:`));
    expect(await account(sub.userId)).toMatchObject({ plan: "pro", subscription: { cancelAtPeriodEnd: true } });

    expect((await cancel(sub.userId)).json.status).toBe("scheduled_cancel");
    expect(fx.stripe.requestsTo("/v1/subscriptions/", "POST")).toHaveLength(1);

    const deleted = fx.stripe.subscriptions.get(sub.subscriptionId);
    await fx.deliver(stripeEvent("customer.subscription.deleted", { created: T0 + 31 * 86_400, object: { ...deleted, status: "canceled" } }));
    expect((await account(sub.userId)).plan).toBe("free");
    expect((await cancel(sub.userId)).json.status).toBe("already_free");
  });

  it("a cancel Stripe answered 500 (kept for its key for 24 hours): the retry a second later is a new request, and applies", async () => {
    const sub = await subscribeAndPay(fx);
    fx.stripe.failNext({ match: "/v1/subscriptions/", method: "POST", status: 500, keep: true });
    expect((await cancel(sub.userId)).status).toBe(502);
    fx.clock.value += 1_000;
    expect((await cancel(sub.userId)).json.status).toBe("scheduled_cancel");
    const updates = fx.stripe.requestsTo(`/v1/subscriptions/${sub.subscriptionId}`, "POST");
    expect(updates).toHaveLength(2);
    expect(updates[1]?.idempotencyKey).not.toBe(updates[0]?.idempotencyKey);
    expect(await account(sub.userId)).toMatchObject({ plan: "pro", subscription: { cancelAtPeriodEnd: true } });
  });
});
