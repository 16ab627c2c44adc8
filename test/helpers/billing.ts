import { checkResponse } from "./openapi.js";
import { afterAll, afterEach, beforeEach, vi } from "vitest";
import { catalog } from "../../lib/catalog.js";
import {
  BILLING_DEFAULTS,
  type BillingAccount,
  type BillingDeps,
  createPriceBook,
  createStripePort,
  stripeClient,
} from "../../lib/billing/index.js";
import { createDynamoTopUpStore } from "../../lib/topup/dynamo-topup-store.js";
import { createDynamoBillingStore } from "../../lib/billing/dynamo-billing-store.js";
import type { BillingAppDeps } from "../../lib/billing/runtime.js";
import { ensureAccount } from "../../lib/ledger/index.js";
import { rawBodyHandler } from "../../lib/http/raw-stack.js";
import type { Route } from "../../lib/http/stack.js";
import { invoke } from "./events.js";
import { useFixture } from "./fixture.js";
import { appFixture, functionEnv, routeCaller } from "./http.js";
import { uniqueUser } from "./ledger.js";
import {
  loadFixture,
  merge,
  signatureFor,
  stripeEvent,
  subscriptionObject,
  uniqueStripeId,
  WEBHOOK_SECRET,
} from "./stripe-events.js";
import { TEST_PRICES } from "./prices.js";
import { startStripeServer } from "./stripe-server.js";
import { userToken } from "./tokens.js";

export { TEST_PRICES };

/** The test prices' unit amounts (cents per month or year): the loopback server prorates upgrades with them. */
export const TEST_PRICE_AMOUNTS: Record<string, number> = {
  [TEST_PRICES.STRIPE_PRICE_PLUS_MONTHLY]: 1_900,
  [TEST_PRICES.STRIPE_PRICE_PRO_MONTHLY]: 4_900,
  [TEST_PRICES.STRIPE_PRICE_PLUS_YEARLY]: 19_000,
  [TEST_PRICES.STRIPE_PRICE_PRO_YEARLY]: 49_000,
};

export const STRIPE_TEST_KEY = "sk_test_creditgate_0123456789";

/** The full environment of a billing function pointed at DynamoDB Local and the test Stripe server. */
export function billingEnv(tableName: string, stripeUrl: string, overrides: Record<string, string> = {}) {
  return functionEnv(tableName, {
    STRIPE_SECRET_KEY: STRIPE_TEST_KEY,
    STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
    STRIPE_API_BASE: stripeUrl,
    ...TEST_PRICES,
    ...overrides,
  });
}

// biome-ignore lint/suspicious/noExplicitAny: events are arbitrary JSON
type Json = any;

export interface DeliverOptions {
  signature?: string;
  secret?: string;
  /** signature timestamp, epoch seconds */
  timestamp?: number;
  base64?: boolean;
}

/**
 * Billing over a fresh DynamoDB Local table (with the ledger's test clock) and a loopback Stripe
 * server that the real SDK targets. The real function modules are imported (their cold start
 * reads an environment pointed at both); `call` runs a function's route with the fixture's deps
 * through the real middy stack, and `deliver` signs and posts a webhook event.
 */
export async function billingFixture(
  options: { stripeRetries?: number; stripeTimeoutMs?: number; billing?: Partial<BillingDeps>; stream?: boolean } = {},
) {
  const app = await appFixture({}, { stream: options.stream ?? false });
  const stripe = await startStripeServer({ unitAmounts: TEST_PRICE_AMOUNTS });
  afterAll(() => stripe.close());
  const billing: BillingDeps = {
    ledger: app.deps.ledger,
    store: createDynamoBillingStore(app.client, app.tableName),
    topUps: createDynamoTopUpStore(app.client, app.tableName),
    stripe: createStripePort(
      stripeClient(STRIPE_TEST_KEY, {
        apiBase: stripe.url,
        maxNetworkRetries: options.stripeRetries ?? 0,
        timeoutMs: options.stripeTimeoutMs ?? 5_000,
      }),
    ),
    prices: createPriceBook(TEST_PRICES, catalog),
    appUrl: "https://app.example.com",
    webhookSecret: WEBHOOK_SECRET,
    checkoutTtlMs: BILLING_DEFAULTS.checkoutTtlMs,
    receiptTtlSeconds: BILLING_DEFAULTS.receiptTtlSeconds,
    ...options.billing,
  };
  const deps: BillingAppDeps = { ...app.deps, billing };

  for (const [name, value] of Object.entries(billingEnv(app.tableName, stripe.url))) vi.stubEnv(name, value);
  afterAll(() => {
    vi.unstubAllEnvs();
  });
  const [subscribe, portal, webhook] = await Promise.all([
    import("../../functions/subscribe.js"),
    import("../../functions/portal.js"),
    import("../../functions/webhook.js"),
  ]);

  const call = routeCaller(deps);
  const webhookHandler = rawBodyHandler(webhook.route, deps);

  /** POSTs an event to the webhook, signed like Stripe signs it (unless told otherwise). */
  const deliver = async (event: Json | string, opts: DeliverOptions = {}) => {
    const payload = typeof event === "string" ? event : JSON.stringify(event, null, 2);
    const signature =
      opts.signature ??
      signatureFor(payload, {
        ...(opts.secret ? { secret: opts.secret } : {}),
        ...(opts.timestamp !== undefined ? { timestamp: opts.timestamp } : {}),
      });
    const answer = await invoke(webhookHandler, {
      routeKey: "POST /v1/stripe/webhook",
      body: payload,
      ...(opts.base64 ? { base64: true } : {}),
      headers: { "stripe-signature": signature, "content-type": "application/json; charset=utf-8", "user-agent": "Stripe/1.0" },
    });
    // every webhook answer is checked against the OpenAPI document too, like every routeCaller answer
    checkResponse("POST /v1/stripe/webhook", { status: answer.status, headers: answer.headers, body: answer.json });
    return answer;
  };

  /** A signed-in user calling a billing route. */
  const asUser = async (route: Route<BillingAppDeps>, userId: string, routeKey: string, body?: unknown) =>
    call(route, { routeKey, token: await userToken(userId), ...(body === undefined ? {} : { body }) });

  return { ...app, deps, billing, stripe, call, deliver, asUser, fns: { subscribe, portal, webhook } };
}

export type BillingFixture = Awaited<ReturnType<typeof billingFixture>>;

/** 2026-01-01T12:00:00Z, the fixtures' event time (and the ledger test clock's start), in seconds. */
export const T0 = 1_767_268_800;

export interface Subscriber {
  userId: string;
  customer: string;
  subscriptionId: string;
  invoiceId: string;
  // biome-ignore lint/suspicious/noExplicitAny: a Stripe subscription object
  subscription: any;
}

/**
 * A user who subscribed through the API and paid: subscribe (customer + checkout), Stripe holds the
 * subscription, then checkout.session.completed and the first invoice.paid are delivered.
 */
export async function subscribeAndPay(
  fx: BillingFixture,
  options: {
    userId?: string;
    plan?: "plus" | "pro";
    interval?: "month" | "year";
    status?: string;
    amountPaid?: number;
    /** epoch seconds; the period starts at T0 and ends 31 days (monthly) or 365 days (annual) later unless told */
    periodEnd?: number;
  } = {},
): Promise<Subscriber> {
  const userId = options.userId ?? uniqueUser("subscriber");
  const plan = options.plan ?? "pro";
  const interval = options.interval ?? "month";
  const started = await fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/subscribe", { plan, interval });
  if (started.status !== 200) throw new Error(`subscribe failed: ${JSON.stringify(started.json)}`);
  const account = (await fx.deps.ledger.store.getAccount(userId)) as BillingAccount;
  const customer = account.stripeCustomerId as string;
  const subscriptionId = uniqueStripeId("sub");
  const invoiceId = uniqueStripeId("in");
  const price = TEST_PRICES[`STRIPE_PRICE_${plan.toUpperCase()}_${interval === "month" ? "MONTHLY" : "YEARLY"}` as keyof typeof TEST_PRICES];
  const periodEnd = options.periodEnd ?? (interval === "month" ? T0 + 31 * 86_400 : T0 + 365 * 86_400);
  const subscription = subscriptionObject({
    id: subscriptionId,
    customer,
    price,
    userId,
    status: options.status ?? "active",
    periodStart: T0,
    periodEnd,
    latestInvoice: invoiceId,
    metadata: { plan, interval },
  });
  fx.stripe.subscriptions.set(subscriptionId, subscription);
  const completed = await fx.deliver(
    stripeEvent("checkout.session.completed.subscription", {
      object: { id: account.pendingCheckout?.sessionId, customer, subscription: subscriptionId, metadata: { userId, plan, interval } },
    }),
  );
  if (completed.status !== 200) throw new Error(`checkout completion failed: ${JSON.stringify(completed.json)}`);
  const paid = await fx.deliver(invoicePaid({ invoiceId, customer, subscriptionId, userId, price, amountPaid: options.amountPaid ?? 2_000 }));
  if (paid.status !== 200) throw new Error(`invoice.paid failed: ${JSON.stringify(paid.json)}`);
  return { userId, customer, subscriptionId, invoiceId, subscription };
}

/** An invoice.paid event for a subscription invoice (first one unless `billingReason` says otherwise). */
export function invoicePaid(input: {
  invoiceId: string;
  customer: string;
  subscriptionId: string;
  userId: string;
  price: string;
  amountPaid?: number;
  billingReason?: string;
  created?: number;
  type?: string;
  proration?: boolean;
  metadata?: Record<string, string>;
  /** the line's period (epoch seconds); a proration line's starts at its proration instant */
  linePeriod?: { start: number; end: number };
  /** the invoice's lines, in place of the one line of `price` (e.g. a new period and proration credits) */
  lines?: { price: string; proration: boolean; amount: number; period: { start: number; end: number } }[];
}) {
  const fixture = loadFixture("invoice.paid").data.object;
  const [line] = fixture.lines.data;
  const lineOf = (entry: NonNullable<typeof input.lines>[number]) =>
    merge(line, {
      amount: entry.amount,
      invoice: input.invoiceId,
      subscription: input.subscriptionId,
      parent: { subscription_item_details: { subscription: input.subscriptionId, proration: entry.proration } },
      pricing: { price_details: { price: entry.price } },
      period: entry.period,
    });
  return stripeEvent("invoice.paid", {
    ...(input.type ? { type: input.type } : {}),
    ...(input.created !== undefined ? { created: input.created } : {}),
    object: {
      id: input.invoiceId,
      customer: input.customer,
      billing_reason: input.billingReason ?? "subscription_create",
      amount_paid: input.amountPaid ?? 2_000,
      parent: { subscription_details: { subscription: input.subscriptionId, metadata: { userId: input.userId, ...input.metadata } } },
      lines: {
        data: input.lines?.map(lineOf) ?? [
          merge(line, {
            invoice: input.invoiceId,
            subscription: input.subscriptionId,
            parent: { subscription_item_details: { subscription: input.subscriptionId, proration: input.proration ?? false } },
            pricing: { price_details: { price: input.price } },
            ...(input.linePeriod ? { period: input.linePeriod } : {}),
          }),
        ],
      },
    },
  });
}

/** An invoice.paid of a subscriber's subscription: a new invoice (unless `invoiceId` is given), the rest as `invoicePaid` takes it. */
export function subscriberInvoicePaid(
  sub: Subscriber,
  input: Omit<Parameters<typeof invoicePaid>[0], "invoiceId" | "customer" | "subscriptionId" | "userId"> & { invoiceId?: string },
) {
  return invoicePaid({ invoiceId: uniqueStripeId("in"), customer: sub.customer, subscriptionId: sub.subscriptionId, userId: sub.userId, ...input });
}

/**
 * The `invoice.paid` event Stripe sends for an invoice the loopback server made (a proration
 * invoice of an upgrade): the very invoice, paid (`amount_paid` as made unless told).
 */
export function paidInvoiceEvent(fx: BillingFixture, invoiceId: string, options: { amountPaid?: number; created?: number } = {}) {
  const stored = fx.stripe.invoices.get(invoiceId);
  if (!stored) throw new Error(`the test Stripe server made no invoice ${invoiceId}`);
  const invoice = structuredClone(stored); // a copy: tests may edit the event
  const amountPaid = options.amountPaid ?? (invoice.amount_paid as number);
  return stripeEvent("invoice.paid", {
    ...(options.created !== undefined ? { created: options.created } : {}),
    object: { ...invoice, status: "paid", amount_paid: amountPaid, amount_remaining: 0 },
  });
}

/** A user the API knows, with a Stripe customer mapped to them (as subscribe/checkout leave it). */
export async function customerOf(fx: BillingFixture, userId: string): Promise<string> {
  await ensureAccount(fx.deps.ledger, userId);
  const customer = uniqueStripeId("cus");
  await fx.billing.store.putCustomerUser(customer, userId, 0);
  await fx.billing.store.linkAccountCustomer(userId, customer);
  return customer;
}

/**
 * The billing fixture of a test file, as most billing files set it up: created once before its
 * tests, the loopback Stripe server's recorded state reset before each test and the test clock put
 * back after it. Returns the fixture itself (a view that exists once `beforeAll` ran).
 */
export function useBillingFixture(options: Parameters<typeof billingFixture>[0] = {}): BillingFixture {
  const fixture = useFixture("useBillingFixture", () => billingFixture(options));
  let clock = 0;
  beforeEach(() => {
    fixture.stripe.reset();
    clock = fixture.clock.value;
  });
  afterEach(() => {
    fixture.clock.value = clock;
  });
  return fixture;
}
