import { createHash } from "node:crypto";
import Stripe from "stripe";
import { AppError, UpstreamError } from "../errors.js";
import { logger } from "../logger.js";

/**
 * The few Stripe calls billing makes, over the real SDK. Everything Stripe can throw is turned
 * into our errors here: a declined card is 402 PAYMENT_FAILED (the caller can fix it), anything
 * else (network, 5xx, rate limits, a request Stripe refused) is 502 UPSTREAM_ERROR.
 */
export interface StripePort {
  /**
   * `intent` names what a request is for; the port appends a digest of the parameters it sends to
   * make the idempotency key (see `idempotencyKey`).
   */
  createCustomer(input: { userId: string; email?: string }, intent: string): Promise<{ id: string }>;
  createCheckoutSession(
    params: Stripe.Checkout.SessionCreateParams,
    intent: string,
  ): Promise<{ id: string; url: string }>;
  createPortalSession(input: { customer: string; returnUrl: string }): Promise<{ url: string }>;
  /** undefined when Stripe has no such subscription */
  retrieveSubscription(id: string): Promise<Stripe.Subscription | undefined>;
  updateSubscription(
    id: string,
    params: Stripe.SubscriptionUpdateParams,
    intent: string,
  ): Promise<Stripe.Subscription>;
  /** The invoice a payment intent paid (invoice payments), when it paid one. */
  invoiceForPaymentIntent(paymentIntentId: string): Promise<string | undefined>;
  /** The price ids a Checkout Session sold (its line items); undefined when Stripe has no such session. */
  checkoutSessionPrices(sessionId: string): Promise<string[] | undefined>;
}

export class PaymentFailedError extends AppError {
  constructor(message = "The payment was declined; update the payment method in the billing portal") {
    super(402, "PAYMENT_FAILED", message);
  }
}

export interface StripeClientOptions {
  /** e.g. http://127.0.0.1:12111 for a local Stripe-compatible server (STRIPE_API_BASE) */
  apiBase?: string | undefined;
  /** the SDK's own retries (with idempotency keys) on network errors, 409 and 5xx */
  maxNetworkRetries?: number;
  timeoutMs?: number;
}

/** One SDK client per key and base for the container: created at cold start, reused warm. */
const clients = new Map<string, Stripe>();

export function stripeClient(secretKey: string, options: StripeClientOptions = {}): Stripe {
  const cacheKey = JSON.stringify([secretKey, options.apiBase, options.maxNetworkRetries, options.timeoutMs]);
  let client = clients.get(cacheKey);
  if (!client) {
    const base = options.apiBase ? new URL(options.apiBase) : undefined;
    client = new Stripe(secretKey, {
      maxNetworkRetries: options.maxNetworkRetries ?? 2,
      timeout: options.timeoutMs ?? 10_000,
      telemetry: false,
      ...(base
        ? {
            host: base.hostname,
            port: base.port || (base.protocol === "https:" ? 443 : 80),
            protocol: base.protocol === "https:" ? "https" : "http",
          }
        : {}),
    });
    clients.set(cacheKey, client);
  }
  return client;
}

function mapStripeError(operation: string, error: unknown): never {
  if (error instanceof AppError) throw error;
  if (error instanceof Stripe.errors.StripeCardError) {
    logger.info("stripe declined a payment", { operation, code: error.code, declineCode: error.decline_code });
    throw new PaymentFailedError();
  }
  const stripeError = error instanceof Stripe.errors.StripeError ? error : undefined;
  logger.error("stripe call failed", {
    operation,
    type: stripeError?.type ?? (error as Error)?.name,
    statusCode: stripeError?.statusCode,
    code: stripeError?.code,
    requestId: stripeError?.requestId,
    // not `message`: the logger reserves that key for the log line's own text and drops ours
    stripeMessage: (error as Error)?.message,
  });
  // A refusal (4xx) means Stripe did nothing; anything else (5xx, timeout, connection) may have
  // been applied without us hearing the answer.
  const status = stripeError?.statusCode;
  if (status !== undefined && status >= 400 && status < 500) throw new UpstreamError();
  throw new UpstreamError("The payment provider did not answer in time; please retry in a few seconds", true);
}

/** JSON with object keys sorted at every level, so equal parameters always digest alike. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value).filter(([, entry]) => entry !== undefined);
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, entry]) => `${JSON.stringify(key)}:${canonicalJson(entry)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/**
 * A Stripe idempotency key: the request's intent (readable in Stripe's logs: user, nonce,
 * subscription…) and a digest of exactly the parameters sent. Stripe answers 400
 * `idempotency_error` to a key reused with other parameters, so whatever varies between two
 * requests changes the key, while a retry or a double click of the same request keeps it and
 * gets Stripe's first answer.
 */
export function idempotencyKey(intent: string, params: unknown): string {
  return `${intent}:${createHash("sha256").update(canonicalJson(params)).digest("hex").slice(0, 16)}`;
}

const idOf = (value: string | { id: string } | null | undefined) => (typeof value === "string" ? value : value?.id);

export function createStripePort(client: Stripe): StripePort {
  async function call<T>(operation: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (error) {
      mapStripeError(operation, error);
    }
  }
  return {
    createCustomer: ({ userId, email }, intent) =>
      call("customers.create", async () => {
        const params = { ...(email ? { email } : {}), metadata: { userId } };
        const customer = await client.customers.create(params, { idempotencyKey: idempotencyKey(intent, params) });
        return { id: customer.id };
      }),

    createCheckoutSession: (params, intent) =>
      call("checkout.sessions.create", async () => {
        const session = await client.checkout.sessions.create(params, { idempotencyKey: idempotencyKey(intent, params) });
        if (!session.url) throw new Error("checkout session without a url");
        return { id: session.id, url: session.url };
      }),

    createPortalSession: ({ customer, returnUrl }) =>
      call("billingPortal.sessions.create", async () => {
        const session = await client.billingPortal.sessions.create({ customer, return_url: returnUrl });
        return { url: session.url };
      }),

    retrieveSubscription: (id) =>
      call("subscriptions.retrieve", async () => {
        try {
          return await client.subscriptions.retrieve(id);
        } catch (error) {
          if (error instanceof Stripe.errors.StripeInvalidRequestError && error.statusCode === 404) return undefined;
          throw error;
        }
      }),

    updateSubscription: (id, params, intent) =>
      call("subscriptions.update", () =>
        client.subscriptions.update(id, params, { idempotencyKey: idempotencyKey(intent, { id, ...params }) }),
      ),

    invoiceForPaymentIntent: (paymentIntentId) =>
      call("invoicePayments.list", async () => {
        const page = await client.invoicePayments.list({
          payment: { type: "payment_intent", payment_intent: paymentIntentId },
          limit: 1,
        });
        return idOf(page.data[0]?.invoice as string | { id: string } | undefined);
      }),

    checkoutSessionPrices: (sessionId) =>
      call("checkout.sessions.listLineItems", async () => {
        try {
          // a pack session sells one price; a page of 10 is more than any session we create
          const page = await client.checkout.sessions.listLineItems(sessionId, { limit: 10 });
          return page.data.flatMap((item) => (item.price?.id ? [item.price.id] : []));
        } catch (error) {
          if (error instanceof Stripe.errors.StripeInvalidRequestError && error.statusCode === 404) return undefined;
          throw error;
        }
      }),
  };
}

export const WEBHOOK_TOLERANCE_SECONDS = 300;

export class WebhookSignatureError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "WebhookSignatureError";
  }
}

/**
 * Verifies a webhook's `Stripe-Signature` over the exact bytes received (5-minute tolerance) and
 * parses it. A bad or stale signature and an unparsable payload are both WebhookSignatureError.
 */
export function verifyWebhook(payload: string | Buffer, signature: string, secret: string): Stripe.Event {
  try {
    return Stripe.webhooks.constructEvent(payload, signature, secret, WEBHOOK_TOLERANCE_SECONDS);
  } catch (error) {
    if (error instanceof Stripe.errors.StripeSignatureVerificationError) {
      throw new WebhookSignatureError("invalid or stale signature");
    }
    if (error instanceof SyntaxError) throw new WebhookSignatureError("payload is not JSON");
    throw error;
  }
}

export const PINNED_API_VERSION: string = Stripe.API_VERSION;
