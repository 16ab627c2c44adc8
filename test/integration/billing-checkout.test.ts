import { GetItemCommand } from "@aws-sdk/client-dynamodb";
import { marshall, unmarshall } from "@aws-sdk/util-dynamodb";
import Stripe from "stripe";
import { beforeAll, describe, expect, it } from "vitest";
import { type BillingAccount, CHECKOUT_IN_FLIGHT_MS, createPriceBook, ensureCustomer } from "../../lib/billing/index.js";
import { catalog } from "../../lib/catalog.js";
import { ensureAccount } from "../../lib/ledger/index.js";
import { httpHandler } from "../../lib/http/stack.js";
import { type BillingFixture, billingFixture, customerOf, STRIPE_TEST_KEY, T0, useBillingFixture } from "../helpers/billing.js";
import { invoke } from "../helpers/events.js";
import { itemsOf } from "../helpers/http.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";
import { serviceToken, userToken } from "../helpers/tokens.js";

const logs = captureLogs();
const fx = useBillingFixture();

const subscribe = (userId: string, body?: unknown) => fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/subscribe", body);
const buyPack = (userId: string, body?: unknown) => fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/checkout", body);
const portal = (userId: string) => fx.asUser(fx.fns.portal.route, userId, "POST /v1/billing/portal");
const account = async (userId: string) => (await fx.deps.ledger.store.getAccount(userId)) as BillingAccount;
/** An idempotency key: the request's intent, then the digest of its parameters. */
const keyFor = (intent: string) => new RegExp(`^${intent.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:[0-9a-f]{16}$`);

async function customerItem(customerId: string) {
  const { Item } = await fx.client.send(
    new GetItemCommand({ TableName: fx.tableName, Key: marshall({ pk: `C#${customerId}`, sk: "CUSTOMER" }), ConsistentRead: true }),
  );
  return Item ? unmarshall(Item) : undefined;
}

describe("POST /v1/billing/subscribe", () => {
  it("creates the customer once and a subscription Checkout Session with the configured price", async () => {
    const user = uniqueUser("sub");
    const res = await subscribe(user);
    expect(res.status).toBe(200);
    expect(res.json.checkoutUrl).toMatch(/^https:\/\/checkout\.stripe\.test\/c\/pay\/cs_test_sub/);

    const [customer] = fx.stripe.requestsTo("/v1/customers", "POST");
    expect(fx.stripe.requestsTo("/v1/customers")).toHaveLength(1);
    expect(customer?.idempotencyKey).toMatch(keyFor(`creditgate:customer:${user}`));
    expect(customer?.body).toEqual({ email: `${user}@example.com`, metadata: { userId: user } });

    const sessions = fx.stripe.requestsTo("/v1/checkout/sessions", "POST");
    expect(sessions).toHaveLength(1);
    const session = sessions[0];
    const stored = await account(user);
    expect(stored.stripeCustomerId).toMatch(/^cus_test/);
    expect(session?.body).toMatchObject({
      mode: "subscription",
      customer: stored.stripeCustomerId,
      client_reference_id: user,
      line_items: [{ price: "price_pro_monthly", quantity: "1" }],
      metadata: { userId: user, plan: "pro", interval: "month" },
      subscription_data: { metadata: { userId: user, plan: "pro", interval: "month" } },
      success_url: "https://app.example.com/billing/success?kind=subscription&session_id={CHECKOUT_SESSION_ID}",
      cancel_url: "https://app.example.com/billing/cancel",
    });
    expect(Number(session?.body.expires_at)).toBe(Math.floor((fx.clock.now() + 31 * 60_000) / 1000));
    expect(session?.idempotencyKey).toMatch(keyFor(`creditgate:checkout:subscription:${user}:${stored.pendingCheckout?.nonce}`));
    expect(session?.authorization).toBe(`Bearer ${STRIPE_TEST_KEY}`);
    expect(session?.stripeVersion).toBe(Stripe.API_VERSION);

    // the customer → user mapping webhooks use, and the pending marker pointing at the session
    expect(await customerItem(stored.stripeCustomerId as string)).toMatchObject({ userId: user });
    expect(stored.pendingCheckout).toMatchObject({ url: res.json.checkoutUrl, sessionId: expect.stringMatching(/^cs_test_sub/) });
  });

  it("takes plan and interval from the body but the price only from config", async () => {
    const user = uniqueUser("sub");
    const res = await subscribe(user, { plan: "plus", interval: "year" });
    expect(res.status).toBe(200);
    expect(fx.stripe.requestsTo("/v1/checkout/sessions")[0]?.body.line_items).toEqual([{ price: "price_plus_yearly", quantity: "1" }]);

    const withPrice = await subscribe(uniqueUser("sub"), { plan: "pro", price: "price_cheap" });
    expect(withPrice.status).toBe(400);
    expect(withPrice.json.error).toMatchObject({ code: "VALIDATION_FAILED", field: "price" });
    const free = await subscribe(uniqueUser("sub"), { plan: "free" });
    expect(free.status).toBe(400);
    expect(free.json.error.code).toBe("VALIDATION_FAILED");
    expect(fx.stripe.requestsTo("/v1/checkout/sessions")).toHaveLength(1);
  });

  it("a double click makes one customer and one checkout; the second answers 409 with the pending checkout", async () => {
    const user = uniqueUser("dbl");
    const [a, b] = await Promise.all([subscribe(user), subscribe(user)]);
    expect([a.status, b.status].sort()).toEqual([200, 409]);
    const refused = a.status === 409 ? a : b;
    expect(refused.json.error).toMatchObject({ code: "CONFLICT", reason: "CHECKOUT_PENDING" });
    expect(fx.stripe.requestsTo("/v1/customers")).toHaveLength(1);
    expect(fx.stripe.requestsTo("/v1/checkout/sessions")).toHaveLength(1);

    const again = await subscribe(user);
    expect(again.status).toBe(409);
    expect(again.json.error).toMatchObject({
      reason: "CHECKOUT_PENDING",
      checkoutUrl: (a.status === 200 ? a : b).json.checkoutUrl,
      expiresAt: expect.any(String),
    });
  });

  it("the pending marker expires: a later subscribe starts a new checkout with the same customer", async () => {
    const user = uniqueUser("exp");
    expect((await subscribe(user)).status).toBe(200);
    fx.clock.value += 30 * 60_000;
    expect((await subscribe(user)).status).toBe(409);
    fx.clock.value += 2 * 60_000;
    const later = await subscribe(user);
    expect(later.status).toBe(200);
    expect(fx.stripe.requestsTo("/v1/customers")).toHaveLength(1);
    const sessions = fx.stripe.requestsTo("/v1/checkout/sessions");
    expect(sessions).toHaveLength(2);
    expect(sessions[0]?.body.customer).toBe(sessions[1]?.body.customer);
    expect(sessions[0]?.idempotencyKey).not.toBe(sessions[1]?.idempotencyKey);
  });

  it("checkout.session.expired clears the marker at once", async () => {
    const user = uniqueUser("cexp");
    expect((await subscribe(user)).status).toBe(200);
    const stored = await account(user);
    const expired = await fx.deliver(
      stripeEvent("checkout.session.expired", {
        object: { id: stored.pendingCheckout?.sessionId, mode: "subscription", customer: stored.stripeCustomerId, metadata: { userId: user } },
      }),
    );
    expect(expired.status).toBe(200);
    expect(expired.json.outcome).toBe("checkout_closed");
    expect((await account(user)).pendingCheckout).toBeUndefined();
    expect((await subscribe(user)).status).toBe(200);
  });

  it("the pending marker stays until the completed checkout's subscription is recorded (no second checkout in the gap)", async () => {
    const user = uniqueUser("gap");
    expect((await subscribe(user)).status).toBe(200);
    const stored = await account(user);
    const customer = stored.stripeCustomerId as string;
    const subscription = subscriptionObject({ id: uniqueStripeId("sub"), customer, price: "price_pro_monthly", userId: user });
    fx.stripe.subscriptions.set(subscription.id, subscription);
    const completed = stripeEvent("checkout.session.completed.subscription", {
      object: { id: stored.pendingCheckout?.sessionId, customer, subscription: subscription.id, metadata: { userId: user, plan: "pro", interval: "month" } },
    });
    // Stripe cannot be read: the webhook answers 5xx and Stripe will redeliver; meanwhile the user still has a pending checkout.
    fx.stripe.failNext({ match: "/v1/subscriptions", status: 500 }, 5);
    expect((await fx.deliver(completed)).status).toBeGreaterThanOrEqual(500);
    fx.stripe.reset();
    const meanwhile = await subscribe(user, { plan: "plus" });
    expect(meanwhile.status).toBe(409);
    expect((await account(user)).pendingCheckout).toBeDefined();
    // The redelivery records the subscription, then releases the marker: subscribe now refuses for the subscription.
    expect((await fx.deliver(completed)).status).toBe(200);
    expect((await account(user)).pendingCheckout).toBeUndefined();
    const after = await subscribe(user, { plan: "plus" });
    expect(after.json.error).toMatchObject({ code: "CONFLICT", reason: "SUBSCRIPTION_EXISTS" });
    expect(fx.stripe.requestsTo("/v1/checkout/sessions")).toHaveLength(0); // none since the reset
  });

  it("refuses with 409 while a live subscription exists", async () => {
    const user = uniqueUser("live");
    expect((await subscribe(user)).status).toBe(200);
    const customer = (await account(user)).stripeCustomerId as string;
    const subscription = subscriptionObject({ id: uniqueStripeId("sub"), customer, price: "price_pro_monthly", userId: user });
    expect((await fx.deliver(stripeEvent("customer.subscription.updated", { object: subscription }))).status).toBe(200);
    fx.clock.value += 32 * 60_000; // the pending marker is gone; the subscription is what refuses
    const res = await subscribe(user, { plan: "plus" });
    expect(res.status).toBe(409);
    expect(res.json.error).toMatchObject({ code: "CONFLICT", reason: "SUBSCRIPTION_EXISTS" });
    expect(fx.stripe.requestsTo("/v1/checkout/sessions")).toHaveLength(1);
  });

  it("refuses with 409 while the current subscription is unpaid, incomplete or paused (it may still be paid: two subscriptions)", async () => {
    for (const status of ["unpaid", "incomplete", "paused"]) {
      const user = uniqueUser(status);
      const customer = await customerOf(fx, user);
      const subscription = subscriptionObject({ id: uniqueStripeId("sub"), customer, price: "price_pro_monthly", userId: user, status });
      expect((await fx.deliver(stripeEvent("customer.subscription.updated", { created: T0, object: subscription }))).status).toBe(200);
      expect((await account(user)).subscription?.status).toBe(status);
      const res = await subscribe(user, { plan: "plus" });
      expect(res.status, status).toBe(409);
      expect(res.json.error, status).toMatchObject({ code: "CONFLICT", reason: "SUBSCRIPTION_NOT_SETTLED", status });
      expect(res.json.error.message).toMatch(/pay the open invoice or cancel .* billing portal/);
      expect((await account(user)).pendingCheckout, status).toBeUndefined();
    }
    expect(fx.stripe.requestsTo("/v1/checkout/sessions")).toHaveLength(0);
  });

  it("allows a new subscription once the current one has ended for good (canceled, incomplete_expired)", async () => {
    for (const [before, ended] of [
      ["unpaid", "canceled"],
      ["incomplete", "incomplete_expired"],
    ]) {
      const user = uniqueUser(ended);
      const customer = await customerOf(fx, user);
      const subscription = (status: string) =>
        subscriptionObject({ id: uniqueStripeId("sub"), customer, price: "price_pro_monthly", userId: user, status });
      const first = subscription(before as string);
      await fx.deliver(stripeEvent("customer.subscription.updated", { created: T0, object: first }));
      await fx.deliver(stripeEvent("customer.subscription.deleted", { created: T0 + 5, object: { ...first, status: ended } }));
      expect((await account(user)).subscription?.status).toBe(ended);
      const res = await subscribe(user, { plan: "plus" });
      expect(res.status, ended).toBe(200);
      expect(res.json.checkoutUrl).toMatch(/^https:\/\/checkout\.stripe\.test\//);
    }
  });

  it("a Stripe refusal (4xx) answers 502 and leaves nothing half-done (marker released, no second customer)", async () => {
    const user = uniqueUser("fail");
    fx.stripe.failNext({ match: "/v1/checkout/sessions", status: 400 });
    const res = await subscribe(user);
    expect(res.status).toBe(502);
    expect(res.json.error.code).toBe("UPSTREAM_ERROR");
    // Stripe's own error text reaches the log (under a key the logger does not reserve), not the client
    expect(logs.lines().find((line) => line.message === "stripe call failed")).toMatchObject({
      level: "ERROR",
      operation: "checkout.sessions.create",
      statusCode: 400,
      stripeMessage: "Injected failure",
    });
    expect(JSON.stringify(res.json)).not.toContain("Injected failure");
    const stored = await account(user);
    expect(stored.pendingCheckout).toBeUndefined();
    expect(stored.stripeCustomerId).toMatch(/^cus_/); // the customer is reusable, not half-made
    expect((await subscribe(user)).status).toBe(200);
    expect(fx.stripe.requestsTo("/v1/customers")).toHaveLength(1);
  });

  it("a 5xx answer, which Stripe keeps for its key (24 hours), releases the checkout: the retry starts afresh at once under a new key", async () => {
    const user = uniqueUser("ambiguous");
    fx.stripe.failNext({ match: "/v1/checkout/sessions", status: 500, keep: true });
    const res = await subscribe(user);
    expect(res.status).toBe(502);
    expect(res.json.error.message).toBe("The payment provider could not complete the request just now; please retry in a few seconds");
    expect((await account(user)).pendingCheckout).toBeUndefined();
    const retried = await subscribe(user);
    expect(retried.status).toBe(200);
    const attempts = fx.stripe.requestsTo("/v1/checkout/sessions", "POST");
    expect(attempts).toHaveLength(2);
    expect(attempts[1]?.idempotencyKey).not.toBe(attempts[0]?.idempotencyKey);
    // the first key would have got its 500 again, for as long as the marker lived (31 minutes)
    const stripe = new Stripe(STRIPE_TEST_KEY, { host: "127.0.0.1", port: Number(new URL(fx.stripe.url).port), protocol: "http", maxNetworkRetries: 0 });
    const replayed = await stripe.checkout.sessions
      .create(attempts[0]?.body as Stripe.Checkout.SessionCreateParams, { idempotencyKey: attempts[0]?.idempotencyKey as string })
      .catch((error: Stripe.errors.StripeError) => error);
    expect(replayed).toMatchObject({ statusCode: 500 });
    expect((await account(user)).pendingCheckout).toMatchObject({ request: "subscription:pro:month", url: retried.json.checkoutUrl });
  });

  it("a conflict (409: a request under the same key still running) keeps the checkout pending; the retry resumes it under the same key", async () => {
    const user = uniqueUser("conflict");
    fx.stripe.failNext({ match: "/v1/checkout/sessions", status: 409, body: { error: { type: "idempotency_error", message: "There is currently another in-progress request using this Idempotent Key." } } });
    expect((await subscribe(user)).status).toBe(502);
    expect((await account(user)).pendingCheckout).toMatchObject({ request: "subscription:pro:month" });
    fx.clock.value += CHECKOUT_IN_FLIGHT_MS;
    expect((await subscribe(user)).status).toBe(200);
    const attempts = fx.stripe.requestsTo("/v1/checkout/sessions", "POST");
    expect(attempts).toHaveLength(2);
    expect(attempts[1]?.idempotencyKey).toBe(attempts[0]?.idempotencyKey); // Stripe answers with the session the other request made
  });

  /** Runs a request whose Lambda dies at one billing store call (the call throws, nothing after it runs). */
  async function killedAt<T>(method: "recordCheckoutSession" | "putCustomerUser", request: () => Promise<T>): Promise<T> {
    const real = fx.billing.store;
    fx.billing.store = { ...real, [method]: () => Promise.reject(new Error("killed")) };
    try {
      return await request();
    } finally {
      fx.billing.store = real;
    }
  }

  it("a double click resuming a dead checkout, one click hearing Stripe's session and the other a 5xx: the session stays pending, never a second one", async () => {
    const user = uniqueUser("resume-5xx");
    // the first request dies after Stripe made its session, before recording it
    expect((await killedAt("recordCheckoutSession", () => subscribe(user))).status).toBe(500);
    fx.clock.value += CHECKOUT_IN_FLIGHT_MS;
    // both clicks see the marker abandoned and resume it under the same nonce
    const real = fx.billing.store;
    let claims = 0;
    let bothClaimed: () => void = () => {};
    const claimed = new Promise<void>((resolve) => {
      bothClaimed = resolve;
    });
    fx.billing.store = {
      ...real,
      claimCheckout: async (...args: Parameters<typeof real.claimCheckout>) => {
        const result = await real.claimCheckout(...args);
        if (++claims === 2) bothClaimed();
        await claimed;
        return result;
      },
    };
    // one of the two Stripe calls meets a 5xx from before the endpoint ran (not kept for the key)
    fx.stripe.failNext({ match: "/v1/checkout/sessions", status: 503 });
    let results: Awaited<ReturnType<typeof subscribe>>[];
    try {
      results = await Promise.all([subscribe(user), subscribe(user)]);
    } finally {
      fx.billing.store = real;
    }
    expect(results.map((result) => result.status).sort()).toEqual([200, 502]);
    const shown = results.find((result) => result.status === 200)?.json.checkoutUrl;
    expect((await account(user)).pendingCheckout).toMatchObject({ url: shown });
    // the next click is told of that session, and Stripe is not asked for another
    const again = await subscribe(user);
    expect(again.status).toBe(409);
    expect(again.json.error).toMatchObject({ reason: "CHECKOUT_PENDING", checkoutUrl: shown });
    const keys = fx.stripe.requestsTo("/v1/checkout/sessions", "POST").map((request) => request.idempotencyKey);
    expect(new Set(keys).size).toBe(1);
  });

  it("a dead checkout resumes only for the same plan: another plan waits, so two sessions are never payable at once", async () => {
    const user = uniqueUser("resume");
    const errorsBefore = fx.stripe.served.idempotencyErrors;
    // The request dies after Stripe made the session, before recording it: the marker stays without one.
    expect((await killedAt("recordCheckoutSession", () => subscribe(user, { plan: "pro" }))).status).toBe(500);
    fx.clock.value += CHECKOUT_IN_FLIGHT_MS;
    const other = await subscribe(user, { plan: "plus" });
    expect(other.status).toBe(409);
    expect(other.json.error).toMatchObject({ code: "CONFLICT", reason: "CHECKOUT_PENDING" });
    const resumed = await subscribe(user, { plan: "pro" });
    expect(resumed.status).toBe(200);
    const sessions = fx.stripe.requestsTo("/v1/checkout/sessions", "POST");
    expect(sessions).toHaveLength(2);
    // the same request under the same key: Stripe answers with the session the dead request made
    expect(sessions[1]?.idempotencyKey).toBe(sessions[0]?.idempotencyKey);
    expect(fx.stripe.served.idempotencyErrors).toBe(errorsBefore);
    expect((await account(user)).pendingCheckout?.url).toBe(resumed.json.checkoutUrl);
  });

  it("a customer created but never linked, then asked for with another email: a new customer, no key reuse", async () => {
    const user = uniqueUser("relink");
    const errorsBefore = fx.stripe.served.idempotencyErrors;
    // Killed after Stripe created the customer, before the mapping was written.
    expect((await killedAt("putCustomerUser", () => subscribe(user))).status).toBe(500);
    const res = await fx.call(fx.fns.subscribe.route, {
      routeKey: "POST /v1/billing/subscribe",
      token: await userToken(user, { claims: { email: `new-${user}@example.com` } }),
    });
    expect(res.status).toBe(200);
    const customers = fx.stripe.requestsTo("/v1/customers", "POST");
    expect(customers.map((request) => request.body.email)).toEqual([`${user}@example.com`, `new-${user}@example.com`]);
    expect(customers[0]?.idempotencyKey).not.toBe(customers[1]?.idempotencyKey);
    expect(fx.stripe.served.idempotencyErrors).toBe(errorsBefore);
    const stored = await account(user);
    expect(fx.stripe.requestsTo("/v1/checkout/sessions", "POST").at(-1)?.body.customer).toBe(stored.stripeCustomerId);
    expect(await customerItem(stored.stripeCustomerId as string)).toMatchObject({ userId: user });
  });

  it("a refused customer creation answers 502 and writes nothing", async () => {
    const user = uniqueUser("cfail");
    fx.stripe.failNext({ match: "/v1/customers", status: 400 });
    const res = await subscribe(user);
    expect(res.status).toBe(502);
    const stored = await account(user);
    expect(stored.stripeCustomerId).toBeUndefined();
    expect(stored.pendingCheckout).toBeUndefined();
    expect(fx.stripe.requestsTo("/v1/checkout/sessions")).toHaveLength(0);
  });

  it("a 5xx answer to the customer's creation, which Stripe keeps for the user's key, is tried once more under a new key: the checkout goes through", async () => {
    const user = uniqueUser("ckept");
    fx.stripe.failNext({ match: "/v1/customers", method: "POST", status: 500, keep: true });
    const res = await subscribe(user);
    expect(res.status).toBe(200);
    const [failed, created] = fx.stripe.requestsTo("/v1/customers", "POST");
    expect(failed?.idempotencyKey).toMatch(keyFor(`creditgate:customer:${user}`));
    expect(created?.idempotencyKey).toMatch(keyFor(`creditgate:customer:${user}:${Math.floor(fx.clock.value / 1000)}`));
    const stored = await account(user);
    expect(stored.stripeCustomerId).toMatch(/^cus_/);
    expect(await customerItem(stored.stripeCustomerId as string)).toMatchObject({ userId: user });
    expect(fx.stripe.requestsTo("/v1/checkout/sessions", "POST").at(-1)?.body.customer).toBe(stored.stripeCustomerId);
    // the user's key still answers its 500, as Stripe does for a day: every checkout would have got it
    const stripe = new Stripe(STRIPE_TEST_KEY, { host: "127.0.0.1", port: Number(new URL(fx.stripe.url).port), protocol: "http", maxNetworkRetries: 0 });
    const replayed = await stripe.customers
      .create(failed?.body as Stripe.CustomerCreateParams, { idempotencyKey: failed?.idempotencyKey as string })
      .catch((error: Stripe.errors.StripeError) => error);
    expect(replayed).toMatchObject({ statusCode: 500 });
  });

  it("a 5xx answer to both tries fails the checkout and releases it; the next request makes the customer", async () => {
    const user = uniqueUser("ckept2");
    fx.stripe.failNext({ match: "/v1/customers", method: "POST", status: 500, keep: true }, 2);
    expect((await subscribe(user)).status).toBe(502);
    const stored = await account(user);
    expect(stored.stripeCustomerId).toBeUndefined();
    expect(stored.pendingCheckout).toBeUndefined();
    fx.clock.value += 1_000;
    expect((await subscribe(user)).status).toBe(200);
    const keys = fx.stripe.requestsTo("/v1/customers", "POST").map((request) => request.idempotencyKey);
    expect(keys).toHaveLength(4); // the user's key (its 500 again), then a key of the new second
    expect(new Set(keys).size).toBe(3);
    expect((await account(user)).stripeCustomerId).toMatch(/^cus_/);
  });

  it("answers 503 STRIPE_NOT_CONFIGURED without a secret key, and calls nothing", async () => {
    const unconfigured = { ...fx.deps, billing: { ...fx.billing, stripe: undefined } };
    const user = uniqueUser("nocfg");
    const res = await invoke(httpHandler(fx.fns.subscribe.route, unconfigured), {
      routeKey: "POST /v1/billing/subscribe",
      token: await userToken(user),
    });
    expect(res.status).toBe(503);
    expect(res.json.error).toMatchObject({ code: "STRIPE_NOT_CONFIGURED" });
    expect(res.json.error.message).toContain("STRIPE_SECRET_KEY");
    expect((await account(user))?.pendingCheckout).toBeUndefined();
    expect(fx.stripe.requests).toHaveLength(0);
  });

  it("needs a user token", async () => {
    const anonymous = await fx.call(fx.fns.subscribe.route, { routeKey: "POST /v1/billing/subscribe" });
    expect(anonymous.status).toBe(401);
    const service = await fx.call(fx.fns.subscribe.route, { routeKey: "POST /v1/billing/subscribe", token: await serviceToken() });
    expect(service.status).toBe(403);
    expect(fx.stripe.requests).toHaveLength(0);
  });
});

describe("Stripe trouble and missing configuration (own fixtures)", () => {
  let slow: BillingFixture;
  let retrying: BillingFixture;
  let noPrice: BillingFixture;
  beforeAll(async () => {
    [slow, retrying, noPrice] = await Promise.all([
      billingFixture({ stripeTimeoutMs: 300 }),
      billingFixture({ stripeRetries: 1 }),
      billingFixture({ billing: { prices: createPriceBook({ STRIPE_PRICE_PRO_MONTHLY: "price_pro_monthly" }, catalog) } }),
    ]);
  });

  it("a Stripe answer too slow for the SDK is a 502; the retry resumes and gets the session Stripe made", async () => {
    const user = uniqueUser("slow");
    expect((await slow.asUser(slow.fns.subscribe.route, user, "POST /v1/billing/subscribe")).status).toBe(200);
    slow.clock.value += 32 * 60_000;
    slow.stripe.delayNext(600);
    const res = await slow.asUser(slow.fns.subscribe.route, user, "POST /v1/billing/subscribe");
    expect(res.status).toBe(502);
    expect(res.json.error.code).toBe("UPSTREAM_ERROR");
    expect(res.json.error.message).toBe("The payment provider did not answer in time; please retry in a few seconds");
    expect(((await slow.deps.ledger.store.getAccount(user)) as BillingAccount).pendingCheckout?.url).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 700)); // Stripe finishes the slow request meanwhile
    slow.clock.value += CHECKOUT_IN_FLIGHT_MS;
    const resumed = await slow.asUser(slow.fns.subscribe.route, user, "POST /v1/billing/subscribe");
    expect(resumed.status).toBe(200);
    const [first, slowOne, retry] = slow.stripe.requestsTo("/v1/checkout/sessions", "POST");
    expect(first?.idempotencyKey).not.toBe(slowOne?.idempotencyKey);
    expect(retry?.idempotencyKey).toBe(slowOne?.idempotencyKey);
  });

  it("an unanswered customer creation (a timeout) keeps its key: the retry gets the customer Stripe made, one in the end", async () => {
    const user = uniqueUser("cslow");
    slow.stripe.delayNext(600);
    expect((await slow.asUser(slow.fns.subscribe.route, user, "POST /v1/billing/subscribe")).status).toBe(502);
    expect(((await slow.deps.ledger.store.getAccount(user)) as BillingAccount).stripeCustomerId).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 700)); // Stripe finishes the slow request meanwhile
    slow.clock.value += CHECKOUT_IN_FLIGHT_MS;
    expect((await slow.asUser(slow.fns.subscribe.route, user, "POST /v1/billing/subscribe")).status).toBe(200);
    const customers = slow.stripe.requestsTo("/v1/customers", "POST").filter((request) => request.body.metadata?.userId === user);
    expect(customers).toHaveLength(2);
    expect(customers[1]?.idempotencyKey).toBe(customers[0]?.idempotencyKey);
    const made = [...slow.stripe.customers.values()].filter((customer) => (customer.metadata as { userId?: string } | undefined)?.userId === user);
    expect(made.map((customer) => customer.id)).toEqual([((await slow.deps.ledger.store.getAccount(user)) as BillingAccount).stripeCustomerId]);
  });

  it("an SDK retry after a 500 reuses the idempotency key, so Stripe makes one session", async () => {
    const user = uniqueUser("retry");
    retrying.stripe.failNext({ match: "/v1/checkout/sessions", status: 500 });
    const res = await retrying.asUser(retrying.fns.subscribe.route, user, "POST /v1/billing/subscribe");
    expect(res.status).toBe(200);
    const attempts = retrying.stripe.requestsTo("/v1/checkout/sessions");
    expect(attempts).toHaveLength(2);
    expect(attempts[0]?.idempotencyKey).toBe(attempts[1]?.idempotencyKey);
  });

  it("answers 503 naming the missing price variable, and writes nothing", async () => {
    const user = uniqueUser("nocfg");
    const yearly = await noPrice.asUser(noPrice.fns.subscribe.route, user, "POST /v1/billing/subscribe", {
      plan: "plus",
      interval: "year",
    });
    expect(yearly.status).toBe(503);
    expect(yearly.json.error).toMatchObject({ code: "STRIPE_NOT_CONFIGURED" });
    expect(yearly.json.error.message).toContain("STRIPE_PRICE_PLUS_YEARLY");
    const pack = await noPrice.asUser(noPrice.fns.subscribe.route, user, "POST /v1/billing/checkout", { pack: "enterprise" });
    expect(pack.status).toBe(503);
    expect(pack.json.error.message).toContain("STRIPE_PRICE_PACK_ENTERPRISE");
    expect(noPrice.stripe.requests).toHaveLength(0);
    expect(((await noPrice.deps.ledger.store.getAccount(user)) as BillingAccount | undefined)?.pendingCheckout).toBeUndefined();
  });
});

describe("one Stripe customer per account (conditional write of stripeCustomerId)", () => {
  it("two customer ids racing to link to one account: the first is kept, the second learns it", async () => {
    const user = uniqueUser("race");
    await ensureAccount(fx.deps.ledger, user);
    const [first, second] = [uniqueStripeId("cus"), uniqueStripeId("cus")];
    expect(await fx.billing.store.linkAccountCustomer(user, first)).toBe(first);
    expect(await fx.billing.store.linkAccountCustomer(user, second)).toBe(first);
    expect(await fx.billing.store.linkAccountCustomer(user, first)).toBe(first); // idempotent for the kept one
    expect((await account(user)).stripeCustomerId).toBe(first);

    // Truly concurrent: whichever lands first is what both learn.
    const other = uniqueUser("race");
    await ensureAccount(fx.deps.ledger, other);
    const candidates = Array.from({ length: 8 }, () => uniqueStripeId("cus"));
    const learned = await Promise.all(candidates.map((candidate) => fx.billing.store.linkAccountCustomer(other, candidate)));
    const kept = (await account(other)).stripeCustomerId;
    expect(candidates).toContain(kept);
    expect(learned).toEqual(Array(8).fill(kept));
  });

  it("requests that each created a customer (stale reads, other emails) all check out with the kept one", async () => {
    const user = uniqueUser("twocus");
    // Both read the account before either linked a customer, as two concurrent first requests do.
    const stale = (await ensureAccount(fx.deps.ledger, user)) as BillingAccount;
    const first = await ensureCustomer(fx.billing, stale, `${user}@example.com`);
    const second = await ensureCustomer(fx.billing, stale, `work-${user}@example.com`);
    const created = fx.stripe.requestsTo("/v1/customers", "POST");
    expect(created).toHaveLength(2); // other parameters: Stripe made a second customer
    expect(second).toBe(first);
    expect((await account(user)).stripeCustomerId).toBe(first);
    expect(logs.lines().find((line) => line.message === "account already had another Stripe customer; keeping it")).toMatchObject({
      level: "WARN",
      userId: user,
      kept: first,
    });
    // the losing customer is mapped to the user (its webhooks still resolve) but never used
    expect((await customerItem(first))?.userId).toBe(user);

    // Concurrent first checkouts of a new user from two sessions with other emails.
    const racer = uniqueUser("twocus");
    fx.stripe.delayNext(150, 2); // both customer creations in flight together
    const [subscribed, bought] = await Promise.all([
      fx.call(fx.fns.subscribe.route, { routeKey: "POST /v1/billing/subscribe", token: await userToken(racer) }),
      fx.call(fx.fns.subscribe.route, {
        routeKey: "POST /v1/billing/checkout",
        token: await userToken(racer, { claims: { email: `work-${racer}@example.com` } }),
        body: { pack: "starter" },
      }),
    ]);
    expect([subscribed.status, bought.status]).toEqual([200, 200]);
    const kept = (await account(racer)).stripeCustomerId;
    const sessions = fx.stripe.requestsTo("/v1/checkout/sessions", "POST").filter((request) => request.body.client_reference_id === racer);
    expect(sessions).toHaveLength(2);
    expect(sessions.map((request) => request.body.customer)).toEqual([kept, kept]);
  });
});

describe("POST /v1/billing/checkout (credit packs)", () => {
  it("creates a payment-mode session for the pack's configured price, reusing the customer", async () => {
    const user = uniqueUser("pack");
    expect((await subscribe(user)).status).toBe(200);
    const res = await buyPack(user, { pack: "starter" });
    expect(res.status).toBe(200);
    expect(res.json.checkoutUrl).toMatch(/cs_test_pay/);
    expect(fx.stripe.requestsTo("/v1/customers")).toHaveLength(1);
    const session = fx.stripe.requestsTo("/v1/checkout/sessions").at(-1);
    const stored = await account(user);
    expect(session?.body).toMatchObject({
      mode: "payment",
      customer: stored.stripeCustomerId,
      client_reference_id: user,
      line_items: [{ price: "price_pack_starter", quantity: "1" }],
      metadata: { userId: user, pack: "starter" },
      payment_intent_data: { metadata: { userId: user, pack: "starter" } },
    });
    expect(session?.idempotencyKey).toMatch(keyFor(`creditgate:checkout:pack:${user}:${stored.pendingPackCheckout?.nonce}`));
    // a pack checkout and a subscription checkout do not block each other; two pack checkouts do
    expect((await buyPack(user, { pack: "pro" })).status).toBe(409);
  });

  it("refuses an unknown pack or extra fields", async () => {
    const user = uniqueUser("pack");
    const unknown = await buyPack(user, { pack: "mega" });
    expect(unknown.status).toBe(400);
    expect(unknown.json.error.field).toBe("pack");
    const missing = await buyPack(user);
    expect(missing.status).toBe(400);
    expect(fx.stripe.requests).toHaveLength(0);
  });
});

describe("POST /v1/billing/portal", () => {
  it("answers 409 NO_BILLING_ACCOUNT without a customer, and writes nothing (the portal only reads)", async () => {
    const unseen = uniqueUser("portal");
    const res = await portal(unseen);
    expect(res.status).toBe(409);
    expect(res.json.error.code).toBe("NO_BILLING_ACCOUNT");
    expect(await itemsOf(fx.client, fx.tableName, unseen)).toEqual([]); // no account created for a user we never saw
    const known = uniqueUser("portal");
    await ensureAccount(fx.deps.ledger, known);
    const items = await itemsOf(fx.client, fx.tableName, known);
    expect((await portal(known)).json.error.code).toBe("NO_BILLING_ACCOUNT");
    expect(await itemsOf(fx.client, fx.tableName, known)).toEqual(items);
    expect(fx.stripe.requests).toHaveLength(0);
  });

  it("answers 503 STRIPE_NOT_CONFIGURED without a secret key, calls nothing and writes nothing", async () => {
    const user = uniqueUser("portal");
    await subscribe(user);
    fx.stripe.reset();
    const items = await itemsOf(fx.client, fx.tableName, user);
    const unconfigured = { ...fx.deps, billing: { ...fx.billing, stripe: undefined } };
    const res = await invoke(httpHandler(fx.fns.portal.route, unconfigured), { routeKey: "POST /v1/billing/portal", token: await userToken(user) });
    expect(res.status).toBe(503);
    expect(res.json.error).toMatchObject({ code: "STRIPE_NOT_CONFIGURED" });
    expect(res.json.error.message).toContain("STRIPE_SECRET_KEY");
    expect(await itemsOf(fx.client, fx.tableName, user)).toEqual(items);
    expect(fx.stripe.requests).toHaveLength(0);
  });

  it("serves only the portal: plan changes and cancellation are the subscribe function's (it writes)", async () => {
    const token = await userToken(uniqueUser("portal"));
    for (const routeKey of ["POST /v1/billing/change-plan", "POST /v1/billing/cancel"]) {
      expect((await fx.call(fx.fns.portal.route, { routeKey, token, body: {} })).status).toBe(404);
    }
  });

  it("opens a portal session for the user's customer, returning to APP_URL", async () => {
    const user = uniqueUser("portal");
    await subscribe(user);
    const res = await portal(user);
    expect(res.status).toBe(200);
    expect(res.json.portalUrl).toMatch(/^https:\/\/billing\.stripe\.test\/p\/session\//);
    const [request] = fx.stripe.requestsTo("/v1/billing_portal/sessions");
    expect(request?.body).toEqual({ customer: (await account(user)).stripeCustomerId, return_url: "https://app.example.com/billing" });
  });
});

describe("the deployed functions (cold start from the environment)", () => {
  it("subscribe.handler reaches the Stripe server named by STRIPE_API_BASE", async () => {
    const user = uniqueUser("cold");
    const res = await invoke(fx.fns.subscribe.handler, {
      routeKey: "POST /v1/billing/subscribe",
      token: await userToken(user),
      body: { plan: "pro", interval: "year" },
    });
    expect(res.status).toBe(200);
    expect(fx.stripe.requestsTo("/v1/checkout/sessions")[0]?.body.line_items[0].price).toBe("price_pro_yearly");
    const refused = await invoke(fx.fns.portal.handler, { routeKey: "POST /v1/billing/portal", token: await userToken(uniqueUser("cold")) });
    expect(refused.status).toBe(409);
  });
});
