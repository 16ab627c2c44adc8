import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getPlans } from "../../client/src/index.js";
import { findFreePort } from "../../infra/local/dynamodb-local.js";
import { invoicePaid, STRIPE_TEST_KEY, TEST_PRICE_AMOUNTS, TEST_PRICES } from "../helpers/billing.js";
import { checkedFetch, startLocalStack, stopLocalStack, until } from "../helpers/e2e.js";
import { OPUS } from "../helpers/ledger.js";
import { signatureFor, stripeEvent, subscriptionObject, uniqueStripeId, WEBHOOK_SECRET } from "../helpers/stripe-events.js";
import { startStripeServer, type StripeTestServer } from "../helpers/stripe-server.js";
import { serviceToken, TEST_SECRET, userToken } from "../helpers/tokens.js";

/**
 * Plan entitlements end to end (issue 23), over HTTP against `npm start`'s stack (in memory, Stripe
 * pointed at the loopback test server): a new free user's call for opus is refused 403
 * PLAN_REQUIRED naming plus; the public plans list shows opus under plus; the user subscribes to
 * plus through Checkout (POST /v1/billing/subscribe, then Stripe's signed checkout.session.completed
 * and invoice.paid delivered to the stack's webhook); the very same authorize is then admitted, and
 * GET /v1/credits lists opus among the plan's models. Every answer is checked against the OpenAPI
 * document (checkedFetch).
 */

// biome-ignore lint/suspicious/noExplicitAny: JSON answers
type Json = any;

describe("npm start: a plan's models, refused, listed, and opened by an upgrade", () => {
  let stripe: StripeTestServer;
  let stack: ReturnType<typeof startLocalStack>;
  let base: string;

  beforeAll(async () => {
    stripe = await startStripeServer({ unitAmounts: TEST_PRICE_AMOUNTS });
    const port = await findFreePort();
    base = `http://127.0.0.1:${port}`;
    stack = startLocalStack({
      PORT: String(port),
      DYNAMODB_LOCAL_PORT: String(await findFreePort()),
      AUTH_JWT_SECRET: TEST_SECRET,
      STRIPE_SECRET_KEY: STRIPE_TEST_KEY,
      STRIPE_API_BASE: stripe.url,
      STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
      ...TEST_PRICES,
      SWEEP_INTERVAL_SECONDS: "3600",
    });
    await until(() => stack.output().includes("Ctrl-C stops everything.") || stack.child.exitCode !== null, "the start banner", 110_000);
    expect(stack.child.exitCode, stack.errors()).toBeNull();
  }, 120_000);

  afterAll(async () => {
    if (stack) await stopLocalStack(stack.child);
    await stripe?.close();
  }, 30_000);

  /** One request over HTTP, answer checked against the document; `token` undefined: no Authorization header at all. */
  async function call(method: string, path: string, token?: string, body?: unknown): Promise<{ status: number; headers: Headers; json: Json }> {
    const response = await checkedFetch(`${base}${path}`, {
      method,
      headers: {
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, headers: response.headers, json: text ? JSON.parse(text) : undefined };
  }

  /** A Stripe event, signed with the stack's webhook secret and posted to its webhook. */
  async function deliver(event: Json): Promise<{ status: number; outcome: string }> {
    const payload = JSON.stringify(event);
    const response = await checkedFetch(`${base}/v1/stripe/webhook`, {
      method: "POST",
      headers: { "content-type": "application/json", "stripe-signature": signatureFor(payload, { secret: WEBHOOK_SECRET }) },
      body: payload,
    });
    return { status: response.status, outcome: ((await response.json()) as { outcome: string }).outcome };
  }

  /**
   * What Stripe does when the user pays the plus Checkout: the subscription exists at Stripe (the
   * webhook retrieves it), checkout.session.completed links it (and sets the plan), then the first
   * invoice.paid grants plus's allowance.
   */
  async function completePlusCheckout(userId: string, checkoutUrl: string): Promise<void> {
    const sessionId = new URL(checkoutUrl).pathname.split("/").at(-1) as string;
    expect(sessionId).toMatch(/^cs_test_sub/);
    const sessions = stripe.requestsTo("/v1/checkout/sessions", "POST").filter((request) => request.body.client_reference_id === userId);
    expect(sessions).toHaveLength(1);
    expect(sessions[0]?.body.line_items).toEqual([{ price: TEST_PRICES.STRIPE_PRICE_PLUS_MONTHLY, quantity: "1" }]);
    const customer = sessions[0]?.body.customer as string;
    expect(customer).toMatch(/^cus_/);
    const now = Math.floor(Date.now() / 1000);
    const period = { start: now, end: now + 31 * 86_400 };
    const subscriptionId = uniqueStripeId("sub");
    const invoiceId = uniqueStripeId("in");
    const price = TEST_PRICES.STRIPE_PRICE_PLUS_MONTHLY;
    stripe.subscriptions.set(
      subscriptionId,
      subscriptionObject({
        id: subscriptionId,
        customer,
        price,
        userId,
        status: "active",
        periodStart: period.start,
        periodEnd: period.end,
        latestInvoice: invoiceId,
        metadata: { plan: "plus", interval: "month" },
      }),
    );
    const completed = await deliver(
      stripeEvent("checkout.session.completed.subscription", {
        created: now,
        object: {
          id: sessionId,
          customer,
          subscription: subscriptionId,
          client_reference_id: userId,
          metadata: { userId, plan: "plus", interval: "month" },
        },
      }),
    );
    expect(completed.status).toBe(200);
    expect(completed.outcome).toMatch(/^subscription_/);
    const paid = await deliver(invoicePaid({ invoiceId, customer, subscriptionId, userId, price, amountPaid: 1_900, created: now, linePeriod: period }));
    expect(paid.status).toBe(200);
  }

  it("free: opus refused 403 PLAN_REQUIRED (plus); GET /v1/plans shows opus under plus; after the plus Checkout the same authorize is admitted", async () => {
    const userId = `e2e-ent-${randomUUID()}`;
    const user = await userToken(userId);
    const gate = await serviceToken();
    const authorize = { userId, requestId: "opus-1", model: OPUS, inputTokens: 1_000, maxOutputTokens: 500 };

    // 1. a new free user: the gate refuses opus, naming the cheapest plan that includes it
    const refused = await call("POST", "/v1/gate/authorize", gate, authorize);
    expect(refused.status).toBe(403);
    expect(refused.json.error).toMatchObject({ code: "PLAN_REQUIRED", model: OPUS, plan: "free", requiredPlan: "plus", reason: "MODEL_NOT_IN_PLAN" });

    // 2. the pricing page, without a token: opus is a plus (and pro) model, not a free one
    const plans = await call("GET", "/v1/plans");
    expect(plans.status).toBe(200);
    expect(plans.headers.get("cache-control")).toBe("public, max-age=300");
    const byId = new Map<string, Json>(plans.json.plans.map((plan: Json) => [plan.id, plan]));
    expect(plans.json.plans.map((plan: Json) => plan.id)).toEqual(["free", "plus", "pro"]);
    expect(byId.get("free").models).not.toContain(OPUS);
    expect(byId.get("plus").models).toContain(OPUS);
    // the client's getPlans (no token sent) reads the same
    expect(await getPlans({ baseUrl: base, fetch: checkedFetch })).toEqual(plans.json);

    // the user's own view: opus greyed out, with the plan to upgrade to
    const before = await call("GET", "/v1/credits", user);
    expect(before.status).toBe(200);
    expect(before.json.plan).toBe("free");
    expect(before.json.entitlements.models).not.toContain(OPUS);
    expect(before.json.entitlements.lockedModels).toEqual([{ model: OPUS, requiredPlan: "plus" }]);

    // 3. the upgrade: Checkout for plus, paid at Stripe, the webhook applies it
    const checkout = await call("POST", "/v1/billing/subscribe", user, { plan: "plus", interval: "month" });
    expect(checkout.status, JSON.stringify(checkout.json)).toBe(200);
    await completePlusCheckout(userId, checkout.json.checkoutUrl);

    // 4. the same authorize (same requestId: the refusal wrote nothing) is now admitted on plus
    const admitted = await call("POST", "/v1/gate/authorize", gate, authorize);
    expect(admitted.status, JSON.stringify(admitted.json)).toBe(200);
    expect(admitted.json).toMatchObject({ plan: "plus", holdId: expect.any(String) });
    const settled = await call("POST", "/v1/gate/settle", gate, { holdId: admitted.json.holdId, inputTokens: 1_000, outputTokens: 200 });
    expect(settled.status).toBe(200);
    expect(settled.json.status).toBe("settled");

    const after = await call("GET", "/v1/credits", user);
    expect(after.json.plan).toBe("plus");
    expect(after.json.subscription).toMatchObject({ status: "active", priceId: TEST_PRICES.STRIPE_PRICE_PLUS_MONTHLY });
    expect(after.json.entitlements.models).toContain(OPUS);
    expect(after.json.entitlements.lockedModels).toEqual([]);
    expect(after.json.entitlements.limits).toMatchObject({ largestReservation: 100_000 });
  }, 60_000);
});
