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
  /** The card an off-session charge uses: the customer's default for invoices, else its newest saved card. */
  savedPaymentMethod(customer: string): Promise<string | undefined>;
  /**
   * A one-off invoice for one price, charged to `paymentMethod`, finalized (open). Three calls
   * (create, add the item, finalize), each with its own key from `intent`: a retry after a crash
   * gets the same invoice, never a second one. `onDraft` learns the invoice's id as soon as it
   * exists, so a caller whose later call fails knows what it made.
   */
  createOneOffInvoice(
    input: { customer: string; paymentMethod: string; price: string; metadata: Record<string, string> },
    intent: string,
    onDraft?: (invoiceId: string) => void,
  ): Promise<InvoiceView>;
  /** Pays an open invoice off-session: the paid invoice, or PaymentFailedError / PaymentActionRequiredError. */
  payInvoice(id: string, paymentMethod: string, intent: string): Promise<InvoiceView>;
  retrieveInvoice(id: string): Promise<InvoiceView | undefined>;
  voidInvoice(id: string, intent: string): Promise<InvoiceView>;
}

/** What billing reads of an invoice it made. */
export interface InvoiceView {
  id: string;
  status: string;
  /** the page where the customer pays or confirms it (set once finalized) */
  hostedUrl?: string;
  amountDue: number;
}

const invoiceView = (invoice: Stripe.Invoice): InvoiceView => ({
  id: invoice.id as string,
  status: invoice.status ?? "draft",
  ...(invoice.hosted_invoice_url ? { hostedUrl: invoice.hosted_invoice_url } : {}),
  amountDue: invoice.amount_due,
});

export class PaymentFailedError extends AppError {
  constructor(message = "The payment was declined; update the payment method in the billing portal") {
    super(402, "PAYMENT_FAILED", message);
  }
}

/** An off-session payment the bank wants the customer to confirm (3-D Secure): only they can, on the invoice's page. */
export class PaymentActionRequiredError extends AppError {
  constructor() {
    super(402, "PAYMENT_ACTION_REQUIRED", "The payment needs the customer's confirmation");
  }
}

/** Stripe's codes for a payment that needs the customer (an off-session charge cannot complete it). */
const ACTION_REQUIRED_CODES = new Set(["authentication_required", "invoice_payment_intent_requires_action"]);

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
    if (error.code && ACTION_REQUIRED_CODES.has(error.code)) throw new PaymentActionRequiredError();
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
  // been applied without us hearing the answer. So may a conflict (409: another request under the
  // same key is still running; 429 lock_timeout: another request holds the object): our own other
  // call is under way, and what it does is not known yet.
  const status = stripeError?.statusCode;
  if (status !== undefined && status >= 400 && status < 500 && status !== 409 && status !== 429) throw new UpstreamError(undefined, false, status);
  throw new UpstreamError(
    status === undefined
      ? "The payment provider did not answer in time; please retry in a few seconds"
      : "The payment provider could not complete the request just now; please retry in a few seconds",
    true,
    status,
  );
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

    savedPaymentMethod: (customer) =>
      call("customers.retrieve", async () => {
        try {
          const found = await client.customers.retrieve(customer);
          // a deleted customer has no card to charge (and listing its methods would be refused)
          if ("deleted" in found && found.deleted) return undefined;
          const preferred = idOf((found as Stripe.Customer).invoice_settings?.default_payment_method);
          if (preferred) return preferred;
          const page = await client.customers.listPaymentMethods(customer, { type: "card", limit: 1 });
          return page.data[0]?.id;
        } catch (error) {
          if (error instanceof Stripe.errors.StripeInvalidRequestError && error.statusCode === 404) return undefined;
          throw error;
        }
      }),

    createOneOffInvoice: ({ customer, paymentMethod, price, metadata }, intent, onDraft) =>
      call("invoices.create", async () => {
        const params: Stripe.InvoiceCreateParams = {
          customer,
          collection_method: "charge_automatically",
          auto_advance: false,
          // only the item added below: never another pending item of the customer's
          pending_invoice_items_behavior: "exclude",
          default_payment_method: paymentMethod,
          metadata,
        };
        const draft = await client.invoices.create(params, { idempotencyKey: idempotencyKey(`${intent}:invoice`, params) });
        const id = draft.id as string;
        onDraft?.(id);
        const item: Stripe.InvoiceItemCreateParams = { customer, invoice: id, pricing: { price }, metadata };
        await client.invoiceItems.create(item, { idempotencyKey: idempotencyKey(`${intent}:item`, item) });
        const finalized = await client.invoices.finalizeInvoice(id, { auto_advance: false }, { idempotencyKey: idempotencyKey(`${intent}:finalize`, { id }) });
        return invoiceView(finalized);
      }),

    payInvoice: (id, paymentMethod, intent) =>
      call("invoices.pay", async () => {
        const params = { off_session: true, payment_method: paymentMethod };
        return invoiceView(await client.invoices.pay(id, params, { idempotencyKey: idempotencyKey(intent, { id, ...params }) }));
      }),

    retrieveInvoice: (id) =>
      call("invoices.retrieve", async () => {
        try {
          return invoiceView(await client.invoices.retrieve(id));
        } catch (error) {
          if (error instanceof Stripe.errors.StripeInvalidRequestError && error.statusCode === 404) return undefined;
          throw error;
        }
      }),

    voidInvoice: (id, intent) =>
      call("invoices.voidInvoice", async () => invoiceView(await client.invoices.voidInvoice(id, {}, { idempotencyKey: idempotencyKey(intent, { id }) }))),
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
