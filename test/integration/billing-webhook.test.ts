import { GetItemCommand } from "@aws-sdk/client-dynamodb";
import { marshall, unmarshall } from "@aws-sdk/util-dynamodb";
import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import Stripe from "stripe";
import { type BillingAccount, HANDLED_EVENT_TYPES, PINNED_API_VERSION } from "../../lib/billing/index.js";
import { auditAccount, getBalance, grantAllowanceIfDue, listHistory } from "../../lib/ledger/index.js";
import { rawBodyHandler } from "../../lib/http/raw-stack.js";
import { customerOf, invoicePaid, subscribeAndPay, subscriberInvoicePaid, T0, useBillingFixture } from "../helpers/billing.js";
import { invoke } from "../helpers/events.js";
import { useFaults } from "../helpers/faults.js";
import { useFixture } from "../helpers/fixture.js";
import { uniqueUser } from "../helpers/ledger.js";
import { portalSwitch as portalSwitchEvents } from "../helpers/annual.js";
import { captureLogs } from "../helpers/logs.js";
import { signatureFor, stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";
import { userToken } from "../helpers/tokens.js";

const logs = captureLogs();
const fx = useBillingFixture();
const faults = useFaults(fx);
// imported once the fixture set the environment its cold start reads
const creditsFunction = useFixture("credits", () => import("../../functions/credits.js"));

const account = async (userId: string) => (await fx.deps.ledger.store.getAccount(userId)) as BillingAccount;
const balance = async (userId: string) => (await getBalance(fx.deps.ledger, userId)).balance;
const keys = async (userId: string) => (await listHistory(fx.deps.ledger, { userId, limit: 100 })).entries.map((e) => e.key);
const credits = async (userId: string) =>
  fx.call(creditsFunction.route, { routeKey: "GET /v1/credits", token: await userToken(userId) });

/** The SecondLiveSubscription EMF lines logged in this test: namespace, service dimension, count. */
const secondLiveMetrics = () =>
  logs
    .lines()
    .filter((line) => JSON.stringify((line._aws as { CloudWatchMetrics?: unknown })?.CloudWatchMetrics ?? []).includes('"SecondLiveSubscription"'))
    .map((line) => {
      const [directive] = (line._aws as { CloudWatchMetrics: { Namespace: string }[] }).CloudWatchMetrics;
      return { namespace: directive?.Namespace, service: line.service, count: line.SecondLiveSubscription };
    });


async function receipt(eventId: string) {
  const { Item } = await fx.client.send(
    new GetItemCommand({ TableName: fx.tableName, Key: marshall({ pk: `EVT#${eventId}`, sk: "RECEIPT" }), ConsistentRead: true }),
  );
  return Item ? unmarshall(Item) : undefined;
}

/** A paid pack session event for a user who started the checkout through the API. */
async function packPurchase(options: { pack?: string; amount?: number } = {}) {
  const userId = uniqueUser("pack");
  const started = await fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/checkout", { pack: options.pack ?? "starter" });
  expect(started.status).toBe(200);
  const stored = await account(userId);
  const session = stored.pendingPackCheckout?.sessionId as string;
  const paymentIntent = uniqueStripeId("pi");
  const event = stripeEvent("checkout.session.completed.payment", {
    object: {
      id: session,
      customer: stored.stripeCustomerId,
      client_reference_id: userId,
      payment_intent: paymentIntent,
      amount_total: options.amount ?? 1_000,
      metadata: { userId, pack: options.pack ?? "starter" },
    },
  });
  return { userId, customer: stored.stripeCustomerId as string, session, paymentIntent, event };
}

describe("signature and delivery", () => {
  it("refuses a bad signature with 400 and applies nothing", async () => {
    const { userId, event } = await packPurchase();
    const res = await fx.deliver(event, { secret: "whsec_someone_else_entirely_0000000000" });
    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({ code: "VALIDATION_FAILED", field: "stripe-signature" });
    expect(await balance(userId)).toBe(10_000);
    expect(await receipt(event.id)).toBeUndefined();
  });

  it("refuses a stale signature (older than 5 minutes)", async () => {
    const { userId, event } = await packPurchase();
    const res = await fx.deliver(event, { timestamp: Math.floor(Date.now() / 1000) - 6 * 60 });
    expect(res.status).toBe(400);
    expect(await balance(userId)).toBe(10_000);
    const fresh = await fx.deliver(event, { timestamp: Math.floor(Date.now() / 1000) - 4 * 60 });
    expect(fresh.status).toBe(200);
  });

  it("verifies the exact raw body: the same JSON re-serialized fails", async () => {
    const { userId, event } = await packPurchase();
    const signedText = JSON.stringify(event, null, 2);
    const res = await fx.deliver(JSON.stringify(event), { signature: signatureFor(signedText) });
    expect(res.status).toBe(400);
    expect(await balance(userId)).toBe(10_000);
  });

  it("decodes API Gateway's base64 body before verifying", async () => {
    const { userId, event } = await packPurchase();
    const res = await fx.deliver(event, { base64: true });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ received: true, eventId: event.id, outcome: "pack_granted" });
    expect(await balance(userId)).toBe(60_000);
  });

  it("refuses a missing signature, an unparsable payload and a signed non-event", async () => {
    const missing = await fx.deliver(stripeEvent("customer.created"), { signature: "" });
    expect(missing.status).toBe(400);
    const notJson = await fx.deliver("this is not json");
    expect(notJson.status).toBe(400);
    expect(notJson.json.error.code).toBe("VALIDATION_FAILED");
    const notEvent = await fx.deliver({ hello: "world" });
    expect(notEvent.status).toBe(400);
  });

  it("records a receipt with a TTL once applied; a redelivery is a no-op success", async () => {
    const { userId, event } = await packPurchase();
    const first = await fx.deliver(event);
    expect(first.json.outcome).toBe("pack_granted");
    const stored = await receipt(event.id);
    expect(stored).toMatchObject({ eventId: event.id, type: "checkout.session.completed", outcome: "pack_granted" });
    expect(stored?.ttl).toBe(Math.floor(fx.clock.now() / 1000) + 30 * 86_400);
    const again = await fx.deliver(event);
    expect(again.status).toBe(200);
    expect(again.json.outcome).toBe("duplicate");
    expect(await balance(userId)).toBe(60_000);
  });

  it("the same event delivered 20 times concurrently grants once, and every delivery succeeds", async () => {
    const { userId, event } = await packPurchase({ pack: "pro" });
    const answers = await Promise.all(Array.from({ length: 20 }, () => fx.deliver(event)));
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    expect(answers.filter((a) => a.json.outcome === "pack_granted")).toHaveLength(1);
    expect(await balance(userId)).toBe(210_000);
    expect((await keys(userId)).filter((key) => key.startsWith("pack#"))).toHaveLength(1);
    expect((await auditAccount(fx.deps.ledger, userId)).problems).toEqual([]);
  });

  it("answers 503 STRIPE_NOT_CONFIGURED without a webhook secret", async () => {
    const handler = rawBodyHandler(fx.fns.webhook.route, { billing: { ...fx.billing, webhookSecret: undefined } });
    const payload = JSON.stringify(stripeEvent("customer.created"));
    const res = await invoke(handler, {
      routeKey: "POST /v1/stripe/webhook",
      body: payload,
      headers: { "stripe-signature": signatureFor(payload) },
    });
    expect(res.status).toBe(503);
    expect(res.json.error.code).toBe("STRIPE_NOT_CONFIGURED");
  });

  it("events of no interest: 200, ignored; unknown customers: 200, parked (not receipted), nothing applied", async () => {
    const other = await fx.deliver(stripeEvent("customer.created"));
    expect(other.status).toBe(200);
    expect(other.json.outcome).toBe("ignored_event_type");
    const stranger = await fx.deliver(
      invoicePaid({ invoiceId: uniqueStripeId("in"), customer: uniqueStripeId("cus"), subscriptionId: "sub_x", userId: "", price: "price_pro_monthly" }),
    );
    expect(stranger.status).toBe(200);
    expect(stranger.json.outcome).toBe("parked_unknown_customer");
    expect(logs.lines().some((line) => line.level === "ERROR" && line.message === "stripe event parked: it cannot be applied now" && line.reason === "unknown_customer")).toBe(true);
    expect(await fx.billing.store.getReceipt(stranger.json.eventId)).toBeUndefined();
  });
});

describe("checkout.session.completed", () => {
  it("subscription mode links customer, subscription and plan, grants nothing, and ends the pending checkout", async () => {
    const userId = uniqueUser("link");
    await fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/subscribe");
    const before = await account(userId);
    expect(before.pendingCheckout).toBeDefined();
    const subscriptionId = uniqueStripeId("sub");
    const subscription = subscriptionObject({
      id: subscriptionId,
      customer: before.stripeCustomerId as string,
      price: "price_pro_monthly",
      userId,
      periodStart: T0,
      periodEnd: T0 + 31 * 86_400,
    });
    fx.stripe.subscriptions.set(subscriptionId, subscription);
    const res = await fx.deliver(
      stripeEvent("checkout.session.completed.subscription", {
        object: { id: before.pendingCheckout?.sessionId, customer: before.stripeCustomerId, subscription: subscriptionId, metadata: { userId } },
      }),
    );
    expect(res.status).toBe(200);
    expect(res.json.outcome).toBe("subscription_applied");
    expect(fx.stripe.requestsTo(`/v1/subscriptions/${subscriptionId}`, "GET")).toHaveLength(1);
    const after = await account(userId);
    expect(after).toMatchObject({ plan: "pro", interval: "month", balance: 10_000 });
    expect(after.subscription).toMatchObject({
      id: subscriptionId,
      status: "active",
      priceId: "price_pro_monthly",
      periodStart: T0 * 1000,
      periodEnd: (T0 + 31 * 86_400) * 1000,
      cancelAtPeriodEnd: false,
    });
    expect(after.pendingCheckout).toBeUndefined();
    expect(after.nextGrantAt).toBeUndefined(); // monthly paid plans are granted by invoices, not the sweep
    expect(await keys(userId)).toEqual(["signup"]);
  });

  it("payment mode grants the pack once per session, only when paid", async () => {
    const { userId, event, session, paymentIntent } = await packPurchase();
    const unpaid = structuredClone(event);
    unpaid.data.object.payment_status = "unpaid";
    const waiting = await fx.deliver(unpaid);
    expect(waiting.json.outcome).toBe("pack_awaiting_payment");
    expect(await balance(userId)).toBe(10_000);

    const succeeded = stripeEvent("checkout.session.async_payment_succeeded", { object: { ...event.data.object } });
    const paid = await fx.deliver(succeeded);
    expect(paid.json.outcome).toBe("pack_granted");
    // the same session reported again under another event id grants nothing more
    const again = await fx.deliver({ ...event, id: uniqueStripeId("evt") });
    expect(again.json.outcome).toBe("pack_already_granted");
    expect(await balance(userId)).toBe(60_000);
    const history = await listHistory(fx.deps.ledger, { userId });
    expect(history.entries[0]).toMatchObject({ key: `pack#${session}`, amount: 50_000, reason: "pack", refs: { pack: "starter", paymentIntent } });
    expect((await getBalance(fx.deps.ledger, userId)).purchased).toBe(50_000);
  });

  it("a paid session naming no known pack, whose line items Stripe cannot list, grants nothing and is parked", async () => {
    const { userId, event } = await packPurchase();
    event.data.object.metadata.pack = "mega";
    // (a session Stripe lists sells a configured pack price: that pack is granted, see billing-parked)
    fx.stripe.sessionPrices.delete(event.data.object.id);
    const res = await fx.deliver(event);
    expect(res.status).toBe(200);
    expect(res.json.outcome).toBe("parked_unknown_pack");
    expect(await balance(userId)).toBe(10_000);
  });
});

describe("invoice.paid", () => {
  it("grants the plan's allowance once per invoice on subscription_create", async () => {
    const sub = await subscribeAndPay(fx);
    expect(await balance(sub.userId)).toBe(110_000);
    const again = await fx.deliver(
      invoicePaid({ invoiceId: sub.invoiceId, customer: sub.customer, subscriptionId: sub.subscriptionId, userId: sub.userId, price: "price_pro_monthly" }),
    );
    expect(again.json.outcome).toBe("allowance_already_granted");
    expect(await balance(sub.userId)).toBe(110_000);
    expect(await keys(sub.userId)).toEqual([`invoice#${sub.invoiceId}`, "signup"]);
  });

  it("grants on subscription_cycle; never on proration or other invoices", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus" });
    expect(await balance(sub.userId)).toBe(50_000);
    const base = { customer: sub.customer, subscriptionId: sub.subscriptionId, userId: sub.userId, price: "price_plus_monthly" };
    const cycle = await fx.deliver(invoicePaid({ ...base, invoiceId: uniqueStripeId("in"), billingReason: "subscription_cycle" }));
    expect(cycle.json.outcome).toBe("allowance_granted");
    const proration = await fx.deliver(
      invoicePaid({ ...base, invoiceId: uniqueStripeId("in"), billingReason: "subscription_update", proration: true, price: "price_pro_monthly" }),
    );
    expect(proration.json.outcome).toBe("ignored_billing_reason");
    // an invoice without a line of a plan price (here a pack's price) buys no allowance
    const manual = await fx.deliver(invoicePaid({ ...base, invoiceId: uniqueStripeId("in"), billingReason: "manual", price: "price_pack_starter" }));
    expect(manual.json.outcome).toBe("ignored_billing_reason");
    expect(await balance(sub.userId)).toBe(90_000);
  });

  it("arriving before checkout.session.completed: granted exactly once, and the plan is linked later", async () => {
    const userId = uniqueUser("early");
    await fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/subscribe");
    const stored = await account(userId);
    const customer = stored.stripeCustomerId as string;
    const subscriptionId = uniqueStripeId("sub");
    const invoiceId = uniqueStripeId("in");
    fx.stripe.subscriptions.set(subscriptionId, subscriptionObject({ id: subscriptionId, customer, price: "price_pro_monthly", userId, periodStart: T0 }));
    const paid = await fx.deliver(invoicePaid({ invoiceId, customer, subscriptionId, userId, price: "price_pro_monthly" }));
    expect(paid.json.outcome).toBe("allowance_granted");
    expect((await account(userId)).plan).toBe("free");
    const completed = await fx.deliver(
      stripeEvent("checkout.session.completed.subscription", {
        object: { id: stored.pendingCheckout?.sessionId, customer, subscription: subscriptionId, metadata: { userId } },
      }),
    );
    expect(completed.json.outcome).toBe("subscription_applied");
    const after = await account(userId);
    expect(after).toMatchObject({ plan: "pro", balance: 110_000 });
    expect(await keys(userId)).toEqual([`invoice#${invoiceId}`, "signup"]);
  });

  it("an annual plan's invoice grants one month (month 0); the sweep schedule takes months 1..11", async () => {
    const sub = await subscribeAndPay(fx, { interval: "year" });
    const stored = await account(sub.userId);
    expect(stored).toMatchObject({ plan: "pro", interval: "year", balance: 110_000, periodAnchor: T0 * 1000, periodIndex: 0 });
    expect(stored.nextGrantAt).toBe(Date.UTC(2026, 1, 1, 12));
  });

  describe("a switch between monthly and annual in the Stripe portal (Stripe resets the billing cycle)", () => {
    const YEAR = 365 * 86_400;
    /** Our clock at `seconds`, for this test only (useBillingFixture puts it back). */
    const clockAt = (seconds: number) => {
      fx.clock.value = seconds * 1000;
    };
    /** What Stripe sends for the switch (test/helpers/annual.ts): the old price's credit covers the first monthly period. */
    function portalSwitch(
      sub: Awaited<ReturnType<typeof subscribeAndPay>>,
      input: { at: number; price: string; periodEnd: number; oldPrice: string; credit: number; fullPrice: number },
    ) {
      const sw = portalSwitchEvents(sub, { ...input, creditPeriodEnd: T0 + 31 * 86_400 });
      fx.stripe.subscriptions.set(sub.subscriptionId, sw.switched);
      return sw;
    }
    /** The switch made at `at`: its subscription update applied (5 s later), then its invoice delivered, whose answer is `res`. */
    async function switchThenPay(sub: Awaited<ReturnType<typeof subscribeAndPay>>, input: Parameters<typeof portalSwitch>[1]) {
      clockAt(input.at + 5);
      const sw = portalSwitch(sub, input);
      expect((await fx.deliver(sw.updated)).json.outcome).toBe("subscription_applied");
      return { ...sw, res: await fx.deliver(sw.paid) };
    }

    it("monthly → annual: the switch's invoice buys month 0 of the new year, and the schedule re-anchors at its start", async () => {
      const sub = await subscribeAndPay(fx, { plan: "plus" });
      expect(await balance(sub.userId)).toBe(50_000);
      const at = T0 + 10 * 86_400; // 11 January, 12:00
      const { invoiceId, paid, res } = await switchThenPay(sub, {
        at,
        price: "price_pro_yearly",
        periodEnd: at + YEAR,
        oldPrice: "price_plus_monthly",
        credit: 1_300,
        fullPrice: 49_000,
      });
      expect(res.json.outcome).toBe("allowance_granted");
      expect(await balance(sub.userId)).toBe(50_000 + 100_000);
      expect((await listHistory(fx.deps.ledger, { userId: sub.userId })).entries[0]).toMatchObject({
        key: `invoice#${invoiceId}`,
        amount: 100_000,
        refs: { plan: "pro", interval: "year", billingReason: "subscription_update" },
      });
      // it bought month 0 and paid months 1..11 (a refund of the year takes back their share as far as granted)
      expect(await fx.billing.store.getPurchase(invoiceId)).toMatchObject({
        credits: 100_000,
        share: { fromMonth: 1, monthly: 100_000 },
        amountCents: 47_700,
      });
      // once per invoice
      expect((await fx.deliver({ ...paid, id: uniqueStripeId("evt") })).json.outcome).toBe("allowance_already_granted");
      // The schedule is the new year's: anchored at the switch, month 1 on 11 February.
      const stored = await account(sub.userId);
      expect(stored).toMatchObject({ plan: "pro", interval: "year", periodAnchor: at * 1000, periodIndex: 0 });
      expect(stored.nextGrantAt).toBe(Date.UTC(2026, 1, 11, 12));
      expect((await grantAllowanceIfDue(fx.deps.ledger, sub.userId)).granted).toBe(false); // month 0 came with the invoice
      fx.clock.value = Date.UTC(2026, 1, 11, 12, 1);
      expect(await grantAllowanceIfDue(fx.deps.ledger, sub.userId)).toMatchObject({ granted: true, applied: true, entry: { amount: 100_000 } });
      expect(await balance(sub.userId)).toBe(250_000);
    });

    it("the switch's invoice arriving before the subscription update grants the same, once", async () => {
      const sub = await subscribeAndPay(fx, { plan: "plus" });
      const at = T0 + 3 * 86_400;
      clockAt(at + 5);
      const { updated, paid } = portalSwitch(sub, {
        at,
        price: "price_plus_yearly",
        periodEnd: at + YEAR,
        oldPrice: "price_plus_monthly",
        credit: 1_700,
        fullPrice: 19_000,
      });
      expect((await fx.deliver(paid)).json.outcome).toBe("allowance_granted");
      expect((await fx.deliver(updated)).json.outcome).toBe("subscription_applied");
      expect(await balance(sub.userId)).toBe(50_000 + 40_000);
      expect(await account(sub.userId)).toMatchObject({ plan: "plus", interval: "year", periodAnchor: at * 1000 });
    });

    it("annual → monthly: the switch's invoice (paid from the unused year's credit) buys the month; no schedule is left", async () => {
      const sub = await subscribeAndPay(fx, { plan: "pro", interval: "year" });
      expect(await balance(sub.userId)).toBe(110_000);
      const at = T0 + 40 * 86_400;
      const { invoiceId, res } = await switchThenPay(sub, {
        at,
        price: "price_plus_monthly",
        periodEnd: at + 31 * 86_400,
        oldPrice: "price_pro_yearly",
        credit: 43_600,
        fullPrice: 1_900,
      });
      expect(res.json.outcome).toBe("allowance_granted");
      // month 1 of the year (from 1 February) was in progress at the switch (10 February): it stays,
      // granted by the year's end since no sweep had run yet (red team 6, RT6-2); then the month's 40,000
      expect(await balance(sub.userId)).toBe(110_000 + 100_000 + 40_000);
      const purchase = await fx.billing.store.getPurchase(invoiceId);
      expect(purchase).toMatchObject({ credits: 40_000, amountCents: 0 });
      expect(purchase?.share).toBeUndefined();
      const stored = await account(sub.userId);
      expect(stored).toMatchObject({ plan: "plus", interval: "month" });
      expect(stored.nextGrantAt).toBeUndefined(); // monthly paid plans are granted by their invoices
    });
  });

  it("an invoice for a price that is no configured plan grants nothing and is parked", async () => {
    const userId = uniqueUser("price");
    const customer = await customerOf(fx, userId);
    const res = await fx.deliver(invoicePaid({ invoiceId: uniqueStripeId("in"), customer, subscriptionId: "sub_z", userId, price: "price_unknown" }));
    expect(res.json.outcome).toBe("parked_unknown_price");
    expect(await balance(userId)).toBe(10_000);
  });
});

describe("customer.subscription.created|updated|deleted", () => {
  const event = (type: "created" | "updated" | "deleted", subscription: unknown, created: number) =>
    stripeEvent(`customer.subscription.${type}`, { created, object: subscription });

  it("tracks plan, status, interval, period dates (from the items) and cancel_at_period_end", async () => {
    const userId = uniqueUser("track");
    const customer = await customerOf(fx, userId);
    const id = uniqueStripeId("sub");
    const sub = (patch: object = {}) =>
      subscriptionObject({ id, customer, price: "price_plus_monthly", userId, periodStart: T0, periodEnd: T0 + 2_678_400, ...patch });
    expect((await fx.deliver(event("created", sub({ status: "incomplete" }), T0))).json.outcome).toBe("subscription_applied");
    expect((await account(userId)).plan).toBe("free"); // incomplete is not live
    await fx.deliver(event("updated", sub(), T0 + 1));
    await fx.deliver(event("updated", sub({ cancelAtPeriodEnd: true }), T0 + 2));
    const view = (await credits(userId)).json;
    expect(view).toMatchObject({
      plan: "plus",
      interval: "month",
      monthlyAllowance: 40_000,
      subscription: {
        id,
        status: "active",
        priceId: "price_plus_monthly",
        cancelAtPeriodEnd: true,
        periodStart: new Date(T0 * 1000).toISOString(),
        periodEnd: new Date((T0 + 2_678_400) * 1000).toISOString(),
      },
    });
  });

  it("trialing counts as live; past_due keeps the plan and shows the status", async () => {
    const userId = uniqueUser("trial");
    const customer = await customerOf(fx, userId);
    const id = uniqueStripeId("sub");
    await fx.deliver(event("created", subscriptionObject({ id, customer, price: "price_pro_monthly", userId, status: "trialing" }), T0));
    expect((await account(userId)).plan).toBe("pro");
    await fx.deliver(event("updated", subscriptionObject({ id, customer, price: "price_pro_monthly", userId, status: "past_due" }), T0 + 5));
    const view = (await credits(userId)).json;
    expect(view.plan).toBe("pro");
    expect(view.subscription.status).toBe("past_due");
    await fx.deliver(event("updated", subscriptionObject({ id, customer, price: "price_pro_monthly", userId, status: "unpaid" }), T0 + 9));
    expect((await account(userId)).plan).toBe("free");
  });

  it("an event older than the state applied changes nothing (out of order)", async () => {
    const userId = uniqueUser("order");
    const customer = await customerOf(fx, userId);
    const id = uniqueStripeId("sub");
    await fx.deliver(event("updated", subscriptionObject({ id, customer, price: "price_pro_monthly", userId }), T0 + 100));
    const older = await fx.deliver(event("updated", subscriptionObject({ id, customer, price: "price_plus_monthly", userId }), T0 + 50));
    expect(older.json.outcome).toBe("subscription_stale");
    const olderDelete = await fx.deliver(
      event("deleted", subscriptionObject({ id, customer, price: "price_pro_monthly", userId, status: "canceled" }), T0 + 99),
    );
    expect(olderDelete.json.outcome).toBe("subscription_stale");
    expect(await account(userId)).toMatchObject({ plan: "pro", subscription: { status: "active", priceId: "price_pro_monthly" } });
    // same second: a `created (incomplete)` cannot undo an `updated (active)`
    const tie = await fx.deliver(event("created", subscriptionObject({ id, customer, price: "price_pro_monthly", userId, status: "incomplete" }), T0 + 100));
    expect(tie.json.outcome).toBe("subscription_stale");
    expect((await account(userId)).subscription?.status).toBe("active");
  });

  it("deleted for the current subscription downgrades to free and resumes the free schedule", async () => {
    const sub = await subscribeAndPay(fx);
    const res = await fx.deliver(event("deleted", { ...sub.subscription, status: "canceled" }, T0 + 600));
    expect(res.json.outcome).toBe("subscription_applied");
    const stored = await account(sub.userId);
    expect(stored).toMatchObject({ plan: "free", balance: 110_000, subscription: { status: "canceled" } });
    expect(stored.nextGrantAt).toBeGreaterThan(fx.clock.now());
  });

  it("deleted for an old subscription while a new one is live downgrades nothing", async () => {
    const userId = uniqueUser("old");
    const customer = await customerOf(fx, userId);
    const oldId = uniqueStripeId("sub");
    const newId = uniqueStripeId("sub");
    await fx.deliver(event("updated", subscriptionObject({ id: oldId, customer, price: "price_plus_monthly", userId }), T0));
    await fx.deliver(event("deleted", subscriptionObject({ id: oldId, customer, price: "price_plus_monthly", userId, status: "canceled" }), T0 + 10));
    expect((await account(userId)).plan).toBe("free");
    const replaced = await fx.deliver(event("created", subscriptionObject({ id: newId, customer, price: "price_pro_monthly", userId }), T0 + 20));
    expect(replaced.json.outcome).toBe("subscription_replaced");
    // a late (redelivered) deletion of the old one
    const late = await fx.deliver(event("deleted", subscriptionObject({ id: oldId, customer, price: "price_plus_monthly", userId, status: "canceled" }), T0 + 30));
    expect(late.status).toBe(200);
    expect(late.json.outcome).toBe("subscription_ignored_not_current");
    expect(await account(userId)).toMatchObject({ plan: "pro", subscription: { id: newId, status: "active" } });
  });

  it("a second live subscription for the same user is detected and reported; the current one stays", async () => {
    const sub = await subscribeAndPay(fx);
    const secondId = uniqueStripeId("sub");
    const second = await fx.deliver(
      event("created", subscriptionObject({ id: secondId, customer: sub.customer, price: "price_plus_monthly", userId: sub.userId }), T0 + 60),
    );
    expect(second.status).toBe(200);
    expect(second.json.outcome).toBe("subscription_second_live_subscription");
    const stored = await account(sub.userId);
    expect(stored).toMatchObject({ plan: "pro", subscription: { id: sub.subscriptionId } });
    expect(stored.extraSubscriptions?.[secondId]).toMatchObject({ status: "active", priceId: "price_plus_monthly" });
    const report = logs.lines().find((line) => line.message === "second live subscription for one user");
    expect(report).toMatchObject({ level: "ERROR", userId: sub.userId, currentSubscription: sub.subscriptionId, otherSubscription: secondId });
    // and counted as an EMF metric (infra/constructs/alarms.ts alarms on it)
    expect(secondLiveMetrics()).toEqual([{ namespace: "creditgate", service: "creditgate", count: 1 }]);
    // once the extra one is cancelled it is no longer reported
    await fx.deliver(
      event("deleted", subscriptionObject({ id: secondId, customer: sub.customer, price: "price_plus_monthly", userId: sub.userId, status: "canceled" }), T0 + 70),
    );
    expect((await account(sub.userId)).extraSubscriptions?.[secondId]).toBeUndefined();
  });

  describe("the current subscription ends while another live one is recorded (double subscription)", () => {
    const YEAR = 365 * 86_400;
    /** A pays pro monthly (current); B, plus yearly, arrives live at T0+60 and is recorded as extra. */
    async function doubleSubscribed() {
      const a = await subscribeAndPay(fx);
      const bId = uniqueStripeId("sub");
      const b = (patch: object = {}) =>
        subscriptionObject({ id: bId, customer: a.customer, price: "price_plus_yearly", userId: a.userId, periodStart: T0 + 50, periodEnd: T0 + 50 + YEAR, ...patch });
      const second = await fx.deliver(event("created", b(), T0 + 60));
      expect(second.json.outcome).toBe("subscription_second_live_subscription");
      expect(await account(a.userId)).toMatchObject({ plan: "pro", subscription: { id: a.subscriptionId } });
      expect(secondLiveMetrics()).toHaveLength(1);
      return { a, bId, b };
    }
    const deletedA = (a: Awaited<ReturnType<typeof subscribeAndPay>>, created: number) =>
      event("deleted", { ...a.subscription, status: "canceled" }, created);

    it("promotes the live one (plan, interval, period, status from its snapshot) in place of dropping to free", async () => {
      const { a, bId } = await doubleSubscribed();
      const before = await balance(a.userId);
      const deleted = deletedA(a, T0 + 600);
      const res = await fx.deliver(deleted);
      expect(res.status).toBe(200);
      expect(res.json.outcome).toBe("subscription_promoted");
      const stored = await account(a.userId);
      expect(stored).toMatchObject({
        plan: "plus",
        interval: "year",
        // an annual plan's monthly grants are anchored at B's period start
        periodAnchor: (T0 + 50) * 1000,
        subscription: {
          id: bId,
          status: "active",
          priceId: "price_plus_yearly",
          periodStart: (T0 + 50) * 1000,
          periodEnd: (T0 + 50 + YEAR) * 1000,
          cancelAtPeriodEnd: false,
          lastEventAt: (T0 + 60) * 1000,
        },
        endedSubscriptions: { [a.subscriptionId]: (T0 + 600) * 1000 },
      });
      expect(stored.extraSubscriptions?.[bId]).toBeUndefined();
      expect(await balance(a.userId)).toBe(before); // a subscription change grants nothing by itself
      expect((await credits(a.userId)).json).toMatchObject({ plan: "plus", interval: "year", subscription: { id: bId, status: "active" } });
      expect(logs.lines().find((line) => line.message === "current subscription ended; another live subscription of the user took its place")).toMatchObject({
        level: "WARN",
        ended: a.subscriptionId,
        promoted: bId,
      });

      // Stripe redelivers the same event: answered from its receipt, nothing changes.
      const duplicate = await fx.deliver(deleted);
      expect(duplicate.json.outcome).toBe("duplicate");
      // The same deletion applied again without a receipt (a crash before the receipt, a second
      // copy of the fact): stale, B stays current.
      const again = await fx.deliver({ ...deleted, id: uniqueStripeId("evt") });
      expect(again.status).toBe(200);
      expect(again.json.outcome).toBe("subscription_stale");
      // A late "A active" from before its deletion is not a second live subscription any more.
      const late = await fx.deliver(event("updated", a.subscription, T0 + 300));
      expect(late.json.outcome).toBe("subscription_stale");
      expect(await account(a.userId)).toEqual(stored);
      expect(secondLiveMetrics()).toHaveLength(1); // B's detection only

      // B ending later (nothing else live) is what takes the account to free.
      const bDeleted = await fx.deliver(
        event("deleted", subscriptionObject({ id: bId, customer: a.customer, price: "price_plus_yearly", userId: a.userId, status: "canceled", periodStart: T0 + 50, periodEnd: T0 + 50 + YEAR }), T0 + 900),
      );
      expect(bDeleted.json.outcome).toBe("subscription_applied");
      expect(await account(a.userId)).toMatchObject({ plan: "free", subscription: { id: bId, status: "canceled" } });
    });

    it("twenty concurrent copies of the deletion promote once; every delivery succeeds", async () => {
      const { a, bId } = await doubleSubscribed();
      const deleted = deletedA(a, T0 + 600);
      const answers = await Promise.all(Array.from({ length: 20 }, () => fx.deliver(deleted)));
      expect(answers.map((answer) => answer.status)).toEqual(Array(20).fill(200));
      const outcomes = answers.map((answer) => answer.json.outcome);
      expect(outcomes.filter((outcome) => outcome === "subscription_promoted")).toHaveLength(1);
      expect(outcomes.filter((outcome) => !["subscription_promoted", "subscription_stale", "duplicate"].includes(outcome))).toEqual([]);
      const stored = await account(a.userId);
      expect(stored).toMatchObject({ plan: "plus", interval: "year", subscription: { id: bId, status: "active" } });
      expect(stored.extraSubscriptions?.[bId]).toBeUndefined();
    });

    it("out of order: an older state of the extra one changes nothing, a newer one is what gets promoted", async () => {
      const { a, bId, b } = await doubleSubscribed();
      // B's `created (incomplete)` from before its activation arrives late: B stays a live extra.
      const olderB = await fx.deliver(event("created", b({ status: "incomplete" }), T0 + 55));
      expect(olderB.json.outcome).toBe("subscription_stale");
      expect((await account(a.userId)).extraSubscriptions?.[bId]).toMatchObject({ status: "active", lastEventAt: (T0 + 60) * 1000 });
      // B moves to pro yearly (newer): the recorded extra follows.
      const newerB = await fx.deliver(event("updated", b({ price: "price_pro_yearly", cancelAtPeriodEnd: true }), T0 + 70));
      expect(newerB.json.outcome).toBe("subscription_second_live_subscription");
      const res = await fx.deliver(deletedA(a, T0 + 600));
      expect(res.json.outcome).toBe("subscription_promoted");
      expect(await account(a.userId)).toMatchObject({
        plan: "pro",
        interval: "year",
        subscription: { id: bId, priceId: "price_pro_yearly", cancelAtPeriodEnd: true, lastEventAt: (T0 + 70) * 1000 },
      });
    });

    it("without a live extra the deletion still downgrades to free (the extra one was cancelled first)", async () => {
      const { a, bId, b } = await doubleSubscribed();
      expect((await fx.deliver(event("deleted", b({ status: "canceled" }), T0 + 100))).json.outcome).toBe("subscription_ignored_not_current");
      // a late "B active" from before its cancellation does not bring it back
      expect((await fx.deliver(event("updated", b(), T0 + 90))).json.outcome).toBe("subscription_stale");
      expect((await fx.deliver(deletedA(a, T0 + 600))).json.outcome).toBe("subscription_applied");
      const stored = await account(a.userId);
      expect(stored).toMatchObject({ plan: "free", subscription: { id: a.subscriptionId, status: "canceled" } });
      expect(stored.extraSubscriptions?.[bId]).toBeUndefined();
    });
  });

  it("an annual subscription anchors the monthly schedule at its period start", async () => {
    const userId = uniqueUser("annual");
    const customer = await customerOf(fx, userId);
    const start = T0 + 86_400;
    await fx.deliver(event("updated", subscriptionObject({ id: uniqueStripeId("sub"), customer, price: "price_plus_yearly", userId, periodStart: start }), T0));
    const stored = await account(userId);
    expect(stored).toMatchObject({ plan: "plus", interval: "year", periodAnchor: start * 1000, periodIndex: 0 });
    expect(stored.nextGrantAt).toBe(Date.UTC(2026, 1, 2, 12));
  });
});

describe("invoice.payment_failed", () => {
  it("is recorded and visible in GET /v1/credits until a later payment", async () => {
    const sub = await subscribeAndPay(fx);
    const failed = await fx.deliver(
      stripeEvent("invoice.payment_failed", {
        created: T0 + 3_600,
        object: { customer: sub.customer, parent: { subscription_details: { subscription: sub.subscriptionId, metadata: { userId: sub.userId } } } },
      }),
    );
    expect(failed.json.outcome).toBe("payment_failure_recorded");
    expect((await credits(sub.userId)).json.paymentFailedAt).toBe(new Date((T0 + 3_600) * 1000).toISOString());
    await fx.deliver(
      subscriberInvoicePaid(sub, {
        price: "price_pro_monthly",
        billingReason: "subscription_cycle",
        created: T0 + 7_200,
      }),
    );
    expect((await credits(sub.userId)).json.paymentFailedAt).toBeNull();
  });
});

describe("transient failures answer 5xx so Stripe retries, with nothing half-applied", () => {
  it("DynamoDB throttled before anything was applied: 500, then the retry applies once", async () => {
    const { userId, event } = await packPurchase();
    faults.next("GetItemCommand", "throttle");
    const failed = await fx.deliver(event);
    expect(failed.status).toBe(500);
    expect(failed.json.error).toEqual({ code: "INTERNAL", message: "Internal error" });
    expect(await balance(userId)).toBe(10_000);
    expect((await fx.deliver(event)).json.outcome).toBe("pack_granted");
    expect(await balance(userId)).toBe(60_000);
  });

  it("contention that outlasts the retries: 503 (Stripe retries), the reason logged, then the retry applies", async () => {
    const userId = uniqueUser("busy");
    const customer = await customerOf(fx, userId);
    const subscription = stripeEvent("customer.subscription.updated", {
      created: T0,
      object: subscriptionObject({ id: uniqueStripeId("sub"), customer, price: "price_pro_monthly", userId }),
    });
    const real = fx.billing.store;
    // Every subscription write loses its condition, as under a storm of concurrent writers.
    fx.billing.store = { ...real, replaceSubscription: async () => false };
    let busy: Awaited<ReturnType<typeof fx.deliver>>;
    try {
      busy = await fx.deliver(subscription);
    } finally {
      fx.billing.store = real;
    }
    expect(busy.status).toBe(503);
    expect(await receipt(subscription.id)).toBeUndefined();
    // the error's own text is logged under `detail` (the logger drops an extra key named `message`)
    expect(logs.lines().find((line) => line.message === "stripe event could not be applied")).toMatchObject({
      level: "ERROR",
      code: "CONFLICT",
      detail: "The account is busy with concurrent updates; retry the request",
    });
    expect((await fx.deliver(subscription)).json.outcome).toBe("subscription_applied");
    expect((await account(userId)).plan).toBe("pro");
  });

  it("the grant was written but its answer lost: 500 without a receipt, and the retry grants nothing more", async () => {
    const { userId, event } = await packPurchase();
    faults.next("TransactWriteItemsCommand", "lostResponse");
    const failed = await fx.deliver(event);
    expect(failed.status).toBe(500);
    expect(await receipt(event.id)).toBeUndefined();
    expect(await balance(userId)).toBe(60_000);
    const retried = await fx.deliver(event);
    expect(retried.status).toBe(200);
    expect(retried.json.outcome).toBe("pack_already_granted");
    expect(await balance(userId)).toBe(60_000);
    expect((await auditAccount(fx.deps.ledger, userId)).problems).toEqual([]);
  });

  it("the receipt could not be written after applying: 500, and the retry re-applies idempotently", async () => {
    const { userId, event } = await packPurchase();
    let armed = true;
    fx.client.middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as { Item?: { pk?: { S?: string } } };
        if (armed && context.commandName === "PutItemCommand" && input.Item?.pk?.S?.startsWith("EVT#")) {
          armed = false;
          throw Object.assign(new Error("throttled"), { name: "ThrottlingException" });
        }
        return next(args);
      },
      { step: "initialize", name: "failReceipt" },
    );
    const failed = await fx.deliver(event);
    expect(failed.status).toBe(500);
    expect(await balance(userId)).toBe(60_000);
    const retried = await fx.deliver(event);
    expect(retried.json.outcome).toBe("pack_already_granted");
    expect(await receipt(event.id)).toBeDefined();
    expect(await balance(userId)).toBe(60_000);
  });

  it("Stripe unavailable while linking a subscription: 502, nothing linked; the retry links", async () => {
    const userId = uniqueUser("down");
    await fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/subscribe");
    const stored = await account(userId);
    const subscriptionId = uniqueStripeId("sub");
    fx.stripe.subscriptions.set(
      subscriptionId,
      subscriptionObject({ id: subscriptionId, customer: stored.stripeCustomerId as string, price: "price_pro_monthly", userId }),
    );
    const completed = stripeEvent("checkout.session.completed.subscription", {
      object: { id: stored.pendingCheckout?.sessionId, customer: stored.stripeCustomerId, subscription: subscriptionId, metadata: { userId } },
    });
    fx.stripe.failNext({ match: "/v1/subscriptions", status: 500 });
    const failed = await fx.deliver(completed);
    expect(failed.status).toBe(502);
    expect((await account(userId)).plan).toBe("free");
    const retried = await fx.deliver(completed);
    expect(retried.status).toBe(200);
    expect((await account(userId)).plan).toBe("pro");
  });
});

describe("the deployed webhook function (cold start from the environment)", () => {
  it("verifies a base64 body with STRIPE_WEBHOOK_SECRET and applies the event", async () => {
    const userId = uniqueUser("cold");
    const customer = await customerOf(fx, userId);
    const subscriptionId = uniqueStripeId("sub");
    const payload = JSON.stringify(
      stripeEvent("customer.subscription.updated", {
        object: subscriptionObject({ id: subscriptionId, customer, price: "price_pro_monthly", userId }),
      }),
    );
    const res = await invoke(fx.fns.webhook.handler, {
      routeKey: "POST /v1/stripe/webhook",
      body: payload,
      base64: true,
      headers: { "stripe-signature": signatureFor(payload) },
    });
    expect(res.status).toBe(200);
    expect(res.json.outcome).toBe("subscription_applied");
    expect((await account(userId)).plan).toBe("pro");
    const forged = await invoke(fx.fns.webhook.handler, {
      routeKey: "POST /v1/stripe/webhook",
      body: payload,
      headers: { "stripe-signature": signatureFor(payload, { secret: "whsec_not_ours_0000000000000000000" }) },
    });
    expect(forged.status).toBe(400);
  });
});

describe("docs/deploy.md: setting up the Stripe webhook endpoint", () => {
  it("selects exactly the event types the webhook handles, on the SDK's pinned API version", () => {
    const deploy = readFileSync(new URL("../../docs/deploy.md", import.meta.url), "utf8");
    const start = deploy.indexOf("## Stripe webhook\n");
    const setup = deploy.slice(start, deploy.indexOf("Then copy the endpoint's signing secret", start));
    expect(start).toBeGreaterThan(0);
    const listed = [...setup.matchAll(/`([a-z_]+(?:\.[a-z_]+)+)`/g)].map((match) => match[1]);
    expect([...new Set(listed)].sort()).toEqual([...HANDLED_EVENT_TYPES].sort());
    // the endpoint must send payloads in the shape the code reads: the SDK's pinned version
    expect(PINNED_API_VERSION).toBe(Stripe.API_VERSION);
    expect(setup.replace(/\s+/g, " ")).toContain(`API version to \`${PINNED_API_VERSION}\``);
  });
});
