import { beforeAll, beforeEach, describe, expect, it, onTestFinished } from "vitest";
import type { BillingAccount } from "../../lib/billing/index.js";
import { getBalance, listHistory } from "../../lib/ledger/index.js";
import { type BillingFixture, billingFixture, invoicePaid, type Subscriber, subscribeAndPay, T0 } from "../helpers/billing.js";
import { httpHandler } from "../../lib/http/stack.js";
import { invoke } from "../helpers/events.js";
import { itemsOf } from "../helpers/http.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";
import { userToken } from "../helpers/tokens.js";

captureLogs();
let fx: BillingFixture;
beforeAll(async () => {
  fx = await billingFixture();
});
beforeEach(() => {
  fx.stripe.reset();
});

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

/** The paid proration invoice of a plus → pro upgrade made through change-plan (its metadata says so). */
const upgradeInvoicePaid = (sub: Subscriber, invoiceId: string) =>
  invoicePaid({
    invoiceId,
    customer: sub.customer,
    subscriptionId: sub.subscriptionId,
    userId: sub.userId,
    price: "price_pro_monthly",
    billingReason: "subscription_update",
    proration: true,
    amountPaid: 1_500,
    metadata: { plan: "pro", interval: "month", upgradeFrom: "plus", upgradePeriodStart: String(T0) },
  });

describe("POST /v1/billing/change-plan", () => {
  it("upgrades with an always-invoiced proration and tops up the allowance difference once", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus" });
    expect(await balance(sub.userId)).toBe(50_000);
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
      metadata: { userId: sub.userId, plan: "pro", interval: "month", upgradeFrom: "plus", upgradePeriodStart: String(T0) },
    });
    expect(update?.idempotencyKey).toMatch(
      new RegExp(`^creditgate:change-plan:${sub.subscriptionId}:price_pro_monthly:${sub.invoiceId}:\\d+:[0-9a-f]{16}$`),
    );

    const stored = await account(sub.userId);
    expect(stored).toMatchObject({ plan: "pro", balance: 110_000, subscription: { priceId: "price_pro_monthly" } });
    const [entry] = (await listHistory(fx.deps.ledger, { userId: sub.userId })).entries;
    expect(entry).toMatchObject({ key: `upgrade#${sub.subscriptionId}#${T0}`, amount: 60_000, reason: "upgrade" });

    // Down and up again in the same period: the top-up is once per subscription period.
    expect((await changePlan(sub.userId, { plan: "plus" })).json).toEqual({ status: "downgraded", plan: "plus", creditsAdded: 0 });
    const again = await changePlan(sub.userId, { plan: "pro" });
    expect(again.json).toEqual({ status: "upgraded", plan: "pro", creditsAdded: 0 });
    expect(await balance(sub.userId)).toBe(110_000);
  });

  it("tops up an upgrade again (once) in a new subscription period, never twice in one", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus" });
    expect((await changePlan(sub.userId, { plan: "pro" })).json.creditsAdded).toBe(60_000);
    expect((await changePlan(sub.userId, { plan: "plus" })).json.creditsAdded).toBe(0);
    expect(await balance(sub.userId)).toBe(110_000);

    // The subscription renews: Stripe moves the item's period on and invoices the cycle. Our clock
    // moves with it (what we apply ourselves is stamped with it, like Stripe's event times).
    const T1 = T0 + 31 * 86_400;
    const clockBefore = fx.clock.value;
    onTestFinished(() => {
      fx.clock.value = clockBefore;
    });
    fx.clock.value = (T1 + 60) * 1000;
    const remote = fx.stripe.subscriptions.get(sub.subscriptionId) as { items: { data: Record<string, unknown>[] }; latest_invoice: string };
    const renewal = uniqueStripeId("in");
    Object.assign(remote.items.data[0] as object, { current_period_start: T1, current_period_end: T1 + 30 * 86_400 });
    remote.latest_invoice = renewal;
    const cycled = await fx.deliver(stripeEvent("customer.subscription.updated", { created: T1, object: remote }));
    expect(cycled.json.outcome).toBe("subscription_applied");
    const paid = await fx.deliver(
      invoicePaid({ invoiceId: renewal, customer: sub.customer, subscriptionId: sub.subscriptionId, userId: sub.userId, price: "price_plus_monthly", billingReason: "subscription_cycle", created: T1 }),
    );
    expect(paid.json.outcome).toBe("allowance_granted");
    expect(await balance(sub.userId)).toBe(150_000);

    // New period: the upgrade tops up again, under the new period's key.
    const upgraded = await changePlan(sub.userId, { plan: "pro" });
    expect(upgraded.json).toEqual({ status: "upgraded", plan: "pro", creditsAdded: 60_000 });
    expect(await balance(sub.userId)).toBe(210_000);
    // …and only once in it, however often the plan goes down and up again.
    expect((await changePlan(sub.userId, { plan: "plus" })).json.creditsAdded).toBe(0);
    expect((await changePlan(sub.userId, { plan: "pro" })).json.creditsAdded).toBe(0);
    expect(await balance(sub.userId)).toBe(210_000);
    const upgrades = (await listHistory(fx.deps.ledger, { userId: sub.userId, limit: 100 })).entries.filter((e) => e.reason === "upgrade");
    expect(upgrades.map((e) => [e.key, e.amount]).sort()).toEqual(
      [
        [`upgrade#${sub.subscriptionId}#${T0}`, 60_000],
        [`upgrade#${sub.subscriptionId}#${T1}`, 60_000],
      ].sort(),
    );
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
    const updates = fx.stripe.requestsTo(`/v1/subscriptions/${sub.subscriptionId}`, "POST");
    expect(updates).toHaveLength(2);
    expect(updates[1]?.idempotencyKey).not.toBe(updates[0]?.idempotencyKey);
    // Stripe really applied it (a replayed answer would have left the subscription on pro)
    const remote = fx.stripe.subscriptions.get(sub.subscriptionId) as { items: { data: { price: { id: string } }[] } };
    expect(remote.items.data[0]?.price.id).toBe("price_plus_monthly");
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
    expect((await listHistory(fx.deps.ledger, { userId: sub.userId })).entries.map((e) => e.key)).not.toContain(
      `upgrade#${sub.subscriptionId}#${T0}`,
    );
  });

  it("a crash after Stripe upgraded is finished by the proration invoice's invoice.paid (same top-up key)", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus" });
    const prorationInvoice = uniqueStripeId("in");
    const res = await fx.deliver(
      upgradeInvoicePaid(sub, prorationInvoice),
    );
    expect(res.json.outcome).toBe("upgrade_topped_up");
    expect(await balance(sub.userId)).toBe(110_000);
    // the later (or retried) change-plan call grants nothing more
    const change = await changePlan(sub.userId, { plan: "pro" });
    expect(change.json.creditsAdded).toBe(0);
    expect(await balance(sub.userId)).toBe(110_000);
  });

  it("an upgrade whose invoice is still being paid (bank debit) tops up only when invoice.paid says what was paid", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus" });
    fx.stripe.prorationStatus = "open";
    const res = await changePlan(sub.userId, { plan: "pro" });
    expect(res.json).toEqual({ status: "upgraded", plan: "pro", creditsAdded: 0 });
    expect(await balance(sub.userId)).toBe(50_000);
    const prorationInvoice = fx.stripe.subscriptions.get(sub.subscriptionId)?.latest_invoice as string;
    const paid = await fx.deliver(
      upgradeInvoicePaid(sub, prorationInvoice),
    );
    expect(paid.json.outcome).toBe("upgrade_topped_up");
    expect(await balance(sub.userId)).toBe(110_000);
    // its purchase records what was really paid: a dispute of the whole payment takes the whole top-up
    const paymentIntent = uniqueStripeId("pi");
    fx.stripe.invoicePayments.set(paymentIntent, prorationInvoice);
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
});
