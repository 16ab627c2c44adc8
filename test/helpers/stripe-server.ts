import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A loopback Stripe-compatible API for tests: the real `stripe` SDK talks to it through its
 * host/port/protocol options (STRIPE_API_BASE). It implements the endpoints billing calls, parses
 * the SDK's form-encoded bodies (`line_items[0][price]=…`) into objects, and records every request
 * (method, path, parsed body, query, Idempotency-Key) so tests assert the exact calls made.
 *
 * Like Stripe, a POST repeated with the same Idempotency-Key replays the first answer, and one
 * reusing a key with other parameters (or on another endpoint) is refused with 400
 * `idempotency_error`, so a key that does not encode everything that varies fails here as it
 * would in production. Tests can make the next requests fail (any status, e.g. 500 or a 402 card
 * decline) or answer slowly.
 *
 * A price change with `proration_behavior: always_invoice` makes a proration invoice like Stripe's:
 * for each changed item a credit line for the old price and a debit line for the new one, each the
 * price's unit amount times the fraction of the item's period left after `proration_date` (now
 * when not given), both lines' periods starting at that instant.
 *
 * One-off invoices (auto top-up) work like Stripe's: `POST /v1/invoices` makes an empty draft,
 * `POST /v1/invoiceitems` with `invoice` and `pricing[price]` adds a line for the price's unit
 * amount, `finalize` opens it (hosted URL, amount due = sum of lines), `pay` charges it with the
 * outcome the test chose (`setPayOutcome`: paid; 402 requiring action or declined, invoice left
 * open; 500; or paid without the caller hearing it), `void` voids an open one. Customers have saved
 * cards (`savePaymentMethod`), listed newest first by `GET /v1/customers/:id/payment_methods`.
 */
export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, unknown>;
  // biome-ignore lint/suspicious/noExplicitAny: parsed form bodies are arbitrary
  body: any;
  idempotencyKey: string | undefined;
  stripeVersion: string | undefined;
  authorization: string | undefined;
}

type Json = Record<string, unknown>;

interface Fault {
  match?: string;
  method?: string;
  status: number;
  body?: Json;
  headers?: Record<string, string>;
  /**
   * a failure after the endpoint began to run: kept for replays under the request's
   * Idempotency-Key, as Stripe keeps it (by default a fault stands for one before the endpoint ran,
   * which Stripe does not keep)
   */
  keep?: boolean;
}

/** Parses `a[b][0][c]=v` pairs into nested objects and arrays (all leaves are strings). */
export function parseForm(text: string): Json {
  const root: Json = {};
  for (const [rawKey, value] of new URLSearchParams(text)) {
    const parts = rawKey.split(/\[|\]\[|\]/).filter((part) => part !== "");
    let node: Record<string, unknown> | unknown[] = root;
    parts.forEach((part, index) => {
      const last = index === parts.length - 1;
      const nextIsIndex = /^\d+$/.test(parts[index + 1] ?? "");
      const key = Array.isArray(node) ? Number(part) : part;
      const container = node as Record<string | number, unknown>;
      if (last) {
        container[key] = value;
        return;
      }
      container[key] ??= nextIsIndex ? [] : {};
      node = container[key] as Record<string, unknown> | unknown[];
    });
  }
  return root;
}

/** JSON with object keys sorted at every level: equal for equal parameters whatever their order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    const entries = Object.entries(value as Json).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([key, entry]) => `${JSON.stringify(key)}:${canonical(entry)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

const stripeError = (status: number, type: string, message: string, code?: string, extra: Json = {}): Answer => ({
  status,
  body: { error: { type, message, ...(code ? { code } : {}), ...extra } },
});

/**
 * A route's answer; `hangUp`: the server acted (and keeps the answer for replays) but never answers;
 * `keep`: a 5xx kept for replays under its Idempotency-Key all the same (Stripe keeps the answer of
 * any request whose endpoint began to run, 500s included); `headers`: sent with it and its replays.
 */
interface Answer {
  status: number;
  body: Json;
  hangUp?: boolean;
  keep?: boolean;
  headers?: Record<string, string>;
}

/**
 * What `POST /v1/invoices/:id/pay` does to an open invoice:
 * - "succeeded": paid (a payment intent recorded in `invoicePayments`), the invoice answered;
 * - "requires_action": 402 card_error `invoice_payment_intent_requires_action` (3-D Secure), invoice stays open;
 * - "card_declined": 402 card_error `card_declined` / `generic_decline`, invoice stays open;
 * - "server_error": 500 api_error, nothing changes; like Stripe, which keeps the answer of a request
 *   whose endpoint began to run under its Idempotency-Key for 24 hours, 500s included, the same key
 *   gets this 500 again (and `stripe-should-retry: false`, so the SDK does not retry it itself);
 *   another key is tried afresh. (An injected failure, `failNext`, is kept only with `keep`: by
 *   default it stands for one before the endpoint ran.)
 * - "timeout_after_acting": paid as "succeeded", but never answered: the server holds the answer
 *   until the client times out and hangs up (give the client a short `timeout`); the same request
 *   (same Idempotency-Key and parameters) then replays the paid invoice.
 */
/** how long a "timeout_after_acting" answer is held for a client without a shorter timeout; then the connection is dropped */
const HANG_UP_LIMIT_MS = 120_000;

export type PayOutcome = "succeeded" | "requires_action" | "card_declined" | "server_error" | "timeout_after_acting";

export interface SavedCard {
  brand?: string;
  last4?: string;
  exp_month?: number;
  exp_year?: number;
}

export interface StripeTestServer {
  url: string;
  requests: RecordedRequest[];
  /**
   * injected failures and delays actually served (not just queued); of the delayed requests, those
   * whose client gave up (hung up) before the answer — Stripe acted, the caller never heard; keys
   * reused with other parameters; pay calls that acted and were never answered ("timeout_after_acting")
   */
  served: { failures: number; delays: number; abandoned: number; idempotencyErrors: number; hangUps: number };
  /** requests whose path starts with `prefix` (and method, when given) */
  requestsTo(prefix: string, method?: string): RecordedRequest[];
  /** the next `times` requests (matching `match` as a path prefix and `method`, if given) fail with this answer */
  failNext(fault: Fault, times?: number): void;
  /** the next `times` requests wait `ms` before answering */
  delayNext(ms: number, times?: number): void;
  subscriptions: Map<string, Json>;
  /**
   * the invoices made, by id, as Stripe would send them in `invoice.*` events: proration invoices
   * and the one-off invoices of `POST /v1/invoices` (their current state)
   */
  invoices: Map<string, Json>;
  /**
   * customers by id: those `POST /v1/customers` made and those the tests gave cards to. Any other
   * `cus_…` id exists too (made outside this server, e.g. seeded by a test): retrieving it answers a
   * customer without cards.
   */
  customers: Map<string, Json>;
  /** saved payment methods by id (`savePaymentMethod`) */
  paymentMethods: Map<string, Json>;
  /**
   * Gives the customer a saved card (attached, listed first as the newest); `default: true` also
   * makes it the customer's `invoice_settings.default_payment_method`. Returns its `pm_…` id.
   */
  savePaymentMethod(customerId: string, options?: { default?: boolean; card?: SavedCard }): string;
  /** Detaches a card; if it was the customer's default, the customer has no default any more. */
  detachPaymentMethod(paymentMethodId: string): void;
  /** The customer is deleted: retrieving it answers `{ id, object: "customer", deleted: true }`, everything else 404. */
  deleteCustomer(customerId: string): void;
  /**
   * The outcome of pay calls. Without `times`: the lasting default, for `customer` or (without it)
   * for everyone (initially "succeeded"; `reset` puts it back). With `times`: the next `times` pay
   * attempts of that customer (or of anyone) only, before the lasting defaults. The outcome of an
   * attempt is taken in this order: the customer's queued ones, anyone's queued ones, the customer's
   * default, the default. Only an actual payment attempt (an open or draft invoice, with a payment
   * method) takes one: idempotent replays, injected failures and refusals do not.
   */
  setPayOutcome(outcome: PayOutcome, options?: { customer?: string; times?: number }): void;
  /** POST /v1/invoices/:id/pay requests received for the customer's invoices (replays, refusals and injected failures included) */
  payAttempts(customerId: string): number;
  /** the payments actually made (invoices of the customer turned paid by a pay call, or `markInvoicePaid`) */
  chargesOf(customerId: string): number;
  /** the one-off invoices `POST /v1/invoices` made for the customer (replays make none), oldest first, current state */
  invoicesOf(customerId: string): Json[];
  /** the number of distinct invoices `POST /v1/invoices` made for the customer */
  invoicesCreated(customerId: string): number;
  /**
   * The customer pays an open invoice on its hosted page (e.g. after "requires_action"): paid, with
   * a payment intent in `invoicePayments`. Returns the invoice.
   */
  markInvoicePaid(invoiceId: string): Json;
  /** the payment intent that paid an invoice, if one did */
  paymentIntentOf(invoiceId: string): string | undefined;
  /** payment intent → invoice, as GET /v1/invoice_payments answers */
  invoicePayments: Map<string, string>;
  /** checkout session → the prices it sold, as GET /v1/checkout/sessions/:id/line_items answers (sessions made here are added) */
  sessionPrices: Map<string, string[]>;
  /**
   * the amount the next proration invoices (upgrades) are paid; undefined (the default, and after
   * `reset`): prorated from the prices' unit amounts (1,500 for prices without one)
   */
  prorationAmount: number | undefined;
  /** the status of the next proration invoice: "paid", or "open" while a bank debit is processing */
  prorationStatus: string;
  /**
   * forgets the recorded requests, queued failures and delays, and the pay outcomes (back to
   * "succeeded" for everyone); objects made (customers, cards, subscriptions, invoices) stay
   */
  reset(): void;
  close(): Promise<void>;
}

export async function startStripeServer(options: { unitAmounts?: Record<string, number> } = {}): Promise<StripeTestServer> {
  const unitAmounts = options.unitAmounts ?? {};
  const requests: RecordedRequest[] = [];
  const served = { failures: 0, delays: 0, abandoned: 0, idempotencyErrors: 0, hangUps: 0 };
  const faults: Fault[] = [];
  const delays: number[] = [];
  /** Idempotency-Key → the first request's endpoint and parameters, and its answer */
  const replays = new Map<string, { request: string; status: number; body: Json; headers?: Record<string, string> }>();
  const subscriptions = new Map<string, Json>();
  const invoices = new Map<string, Json>();
  const invoicePayments = new Map<string, string>();
  const sessionPrices = new Map<string, string[]>();
  const customers = new Map<string, Json>();
  const paymentMethods = new Map<string, Json>();
  /** customer → its payment method ids, oldest first */
  const customerCards = new Map<string, string[]>();
  /** customer → its one-off invoice ids, oldest first */
  const customerInvoices = new Map<string, string[]>();
  const charges = new Map<string, number>();
  const payOutcomes = { fallback: "succeeded" as PayOutcome, byCustomer: new Map<string, PayOutcome>() };
  const queuedOutcomes: { customer: string | undefined; outcome: PayOutcome }[] = [];
  let serverUrl = "";
  let counter = 0;
  const nextId = (prefix: string) => `${prefix}_test${String(++counter).padStart(6, "0")}`;
  const now = () => Math.floor(Date.now() / 1000);

  const state: { prorationAmount: number | undefined; prorationStatus: string } = { prorationAmount: undefined, prorationStatus: "paid" };

  const noSuch = (what: string, id: string, param?: string): Answer =>
    stripeError(404, "invalid_request_error", `No such ${what}: '${id}'`, "resource_missing", param ? { param } : {});
  const copy = (value: Json): Json => structuredClone(value);

  /** The customer's record (one made outside this server is made here on first use); undefined when deleted. */
  function customerRecord(id: string): Json | undefined {
    let customer = customers.get(id);
    if (!customer) {
      customer = newCustomer(id, {});
      customers.set(id, customer);
    }
    return customer.deleted ? undefined : customer;
  }

  function newCustomer(id: string, body: Json): Json {
    return {
      id,
      object: "customer",
      email: body.email ?? null,
      name: body.name ?? null,
      metadata: body.metadata ?? {},
      created: now(),
      currency: null,
      balance: 0,
      delinquent: false,
      default_source: null,
      livemode: false,
      invoice_settings: { custom_fields: null, default_payment_method: null, footer: null, rendering_options: null },
    };
  }

  function attachedTo(customerId: string, paymentMethodId: string): boolean {
    return (customerCards.get(customerId) ?? []).includes(paymentMethodId);
  }

  function invoiceTotal(invoice: Json): number {
    return ((invoice.lines as { data: Json[] }).data ?? []).reduce((sum, line) => sum + (line.amount as number), 0);
  }

  function finalize(invoice: Json): void {
    const total = invoiceTotal(invoice);
    invoice.status = "open";
    invoice.number = `TEST-${String(counter).padStart(4, "0")}`;
    invoice.subtotal = total;
    invoice.subtotal_excluding_tax = total;
    invoice.total = total;
    invoice.total_excluding_tax = total;
    invoice.amount_due = total;
    invoice.amount_remaining = total;
    invoice.hosted_invoice_url = `${serverUrl}/hosted/invoices/${invoice.id}`;
    invoice.invoice_pdf = `${serverUrl}/hosted/invoices/${invoice.id}/pdf`;
    invoice.effective_at = now();
    (invoice.status_transitions as Json).finalized_at = now();
    // like Stripe, an invoice of nothing to pay is paid as it is finalized
    if (total === 0) {
      invoice.status = "paid";
      (invoice.status_transitions as Json).paid_at = now();
    }
  }

  function markPaid(invoice: Json): string {
    const paymentIntent = nextId("pi");
    invoice.status = "paid";
    invoice.amount_paid = invoice.amount_due;
    invoice.amount_remaining = 0;
    (invoice.status_transitions as Json).paid_at = now();
    invoicePayments.set(paymentIntent, invoice.id as string);
    const customer = invoice.customer as string;
    charges.set(customer, (charges.get(customer) ?? 0) + 1);
    return paymentIntent;
  }

  function takePayOutcome(customer: string): PayOutcome {
    let index = queuedOutcomes.findIndex((queued) => queued.customer === customer);
    if (index < 0) index = queuedOutcomes.findIndex((queued) => queued.customer === undefined);
    if (index >= 0) return (queuedOutcomes.splice(index, 1)[0] as { outcome: PayOutcome }).outcome;
    return payOutcomes.byCustomer.get(customer) ?? payOutcomes.fallback;
  }

  function createInvoice(body: Json): Answer {
    if (typeof body.customer !== "string") {
      return stripeError(400, "invalid_request_error", "Missing required param: customer.", "parameter_missing", { param: "customer" });
    }
    const customer = customerRecord(body.customer);
    if (!customer) return noSuch("customer", body.customer, "customer");
    const paymentMethod = body.default_payment_method;
    if (typeof paymentMethod === "string" && paymentMethod !== "" && !attachedTo(body.customer, paymentMethod)) {
      return noSuch("PaymentMethod", paymentMethod, "default_payment_method");
    }
    const id = nextId("in");
    const created = now();
    const invoice: Json = {
      id,
      object: "invoice",
      customer: body.customer,
      status: "draft",
      billing_reason: "manual",
      collection_method: body.collection_method ?? "charge_automatically",
      auto_advance: body.auto_advance === undefined ? false : body.auto_advance === "true",
      currency: body.currency ?? "usd",
      default_payment_method: typeof paymentMethod === "string" && paymentMethod !== "" ? paymentMethod : null,
      description: body.description ?? null,
      metadata: body.metadata ?? {},
      parent: null,
      amount_due: 0,
      amount_paid: 0,
      amount_remaining: 0,
      subtotal: 0,
      subtotal_excluding_tax: 0,
      total: 0,
      total_excluding_tax: 0,
      attempt_count: 0,
      attempted: false,
      hosted_invoice_url: null,
      invoice_pdf: null,
      number: null,
      created,
      effective_at: null,
      period_start: created,
      period_end: created,
      livemode: false,
      status_transitions: { finalized_at: null, marked_uncollectible_at: null, paid_at: null, voided_at: null },
      // pending_invoice_items_behavior=exclude or not: this server keeps no pending items, so a new invoice is empty
      lines: { object: "list", data: [], has_more: false, url: `/v1/invoices/${id}/lines` },
    };
    invoices.set(id, invoice);
    customerInvoices.set(body.customer, [...(customerInvoices.get(body.customer) ?? []), id]);
    return { status: 200, body: copy(invoice) };
  }

  function createInvoiceItem(body: Json): Answer {
    if (typeof body.customer !== "string") {
      return stripeError(400, "invalid_request_error", "Missing required param: customer.", "parameter_missing", { param: "customer" });
    }
    if (!customerRecord(body.customer)) return noSuch("customer", body.customer, "customer");
    const price = (body.pricing as Json | undefined)?.price;
    if (typeof price !== "string") {
      return stripeError(400, "invalid_request_error", "Missing required param: pricing[price].", "parameter_missing", {
        param: "pricing[price]",
      });
    }
    if (typeof body.invoice !== "string") {
      // this server keeps no pending invoice items: an item must name its (draft) invoice
      return stripeError(400, "invalid_request_error", "This test server needs `invoice` on invoice items.", "parameter_missing", {
        param: "invoice",
      });
    }
    const invoice = invoices.get(body.invoice);
    if (!invoice) return noSuch("invoice", body.invoice, "invoice");
    if (invoice.customer !== body.customer) {
      return stripeError(400, "invalid_request_error", `Invoice ${body.invoice} belongs to another customer.`, undefined, { param: "invoice" });
    }
    if (invoice.status !== "draft") {
      return stripeError(
        400,
        "invalid_request_error",
        `You can only add invoice items to draft invoices; ${body.invoice} is ${invoice.status}.`,
        "invoice_not_editable",
        { param: "invoice" },
      );
    }
    const quantity = body.quantity === undefined ? 1 : Number(body.quantity);
    // 1,500 for a price without a unit amount, as for proration invoices
    const unit = unitAmounts[price] ?? 1_500;
    const amount = unit * quantity;
    const itemId = nextId("ii");
    const at = now();
    const period = { start: at, end: at };
    const pricing = { type: "price_details", price_details: { price, product: `prod_${price}` }, unit_amount_decimal: String(unit) };
    const metadata = (body.metadata as Json | undefined) ?? {};
    const line = {
      id: nextId("il"),
      object: "line_item",
      invoice: invoice.id,
      amount,
      subtotal: amount,
      currency: invoice.currency,
      description: body.description ?? null,
      quantity,
      period,
      metadata,
      livemode: false,
      pricing,
      parent: {
        type: "invoice_item_details",
        invoice_item_details: { invoice_item: itemId, proration: false, proration_details: { credited_items: null }, subscription: null },
        subscription_item_details: null,
      },
    };
    (invoice.lines as { data: Json[] }).data.push(line);
    const total = invoiceTotal(invoice);
    Object.assign(invoice, { subtotal: total, subtotal_excluding_tax: total, total, total_excluding_tax: total, amount_due: total, amount_remaining: total });
    return {
      status: 200,
      body: {
        id: itemId,
        object: "invoiceitem",
        amount,
        currency: invoice.currency,
        customer: body.customer,
        date: at,
        description: body.description ?? null,
        discountable: true,
        invoice: invoice.id,
        livemode: false,
        metadata,
        parent: null,
        period,
        pricing,
        proration: false,
        quantity,
      },
    };
  }

  function invoiceAction(invoice: Json, action: string, body: Json): Answer {
    const id = invoice.id as string;
    const refuse = (message: string, code?: string) => stripeError(400, "invalid_request_error", message, code);
    if (action === "finalize") {
      if (invoice.status !== "draft") return refuse(`This invoice is already finalized (status ${invoice.status}).`, "invoice_not_editable");
      finalize(invoice);
      return { status: 200, body: copy(invoice) };
    }
    if (action === "void") {
      if (invoice.status !== "open") return refuse(`You can only void an open invoice; ${id} is ${invoice.status}.`, "invoice_not_editable");
      invoice.status = "void";
      (invoice.status_transitions as Json).voided_at = now();
      return { status: 200, body: copy(invoice) };
    }
    // pay
    if (invoice.status === "paid") return refuse("Invoice is already paid");
    if (invoice.status !== "draft" && invoice.status !== "open") return refuse(`You cannot pay an invoice that is ${invoice.status}.`);
    const customer = invoice.customer as string;
    const record = customerRecord(customer);
    if (!record) return noSuch("customer", customer);
    const paymentMethod =
      (typeof body.payment_method === "string" ? body.payment_method : undefined) ??
      (invoice.default_payment_method as string | null) ??
      ((record.invoice_settings as Json).default_payment_method as string | null) ??
      undefined;
    if (paymentMethod !== undefined && !attachedTo(customer, paymentMethod)) return noSuch("PaymentMethod", paymentMethod, "payment_method");
    // like Stripe, paying a draft finalizes it first
    if (invoice.status === "draft") finalize(invoice);
    if ((invoice.status as string) === "paid") return { status: 200, body: copy(invoice) };
    if (paymentMethod === undefined) {
      return refuse("This customer has no attached payment source or default payment method. Please consider adding a default payment method.");
    }
    const outcome = takePayOutcome(customer);
    if (outcome === "server_error") {
      const failed = stripeError(500, "api_error", "An unknown error occurred (test server: pay outcome server_error).");
      return { ...failed, keep: true, headers: { "stripe-should-retry": "false" } };
    }
    if (outcome === "succeeded" || outcome === "timeout_after_acting") {
      invoice.attempted = true;
      invoice.attempt_count = (invoice.attempt_count as number) + 1;
      markPaid(invoice);
      return { status: 200, body: copy(invoice), hangUp: outcome === "timeout_after_acting" };
    }
    invoice.attempted = true;
    invoice.attempt_count = (invoice.attempt_count as number) + 1;
    const paymentIntent = {
      id: nextId("pi"),
      object: "payment_intent",
      amount: invoice.amount_due,
      currency: invoice.currency,
      customer,
      payment_method: paymentMethod,
      livemode: false,
      status: outcome === "requires_action" ? "requires_action" : "requires_payment_method",
    };
    if (outcome === "requires_action") {
      return stripeError(
        402,
        "card_error",
        "This payment requires additional user action before it can be completed successfully. Payment can be completed using the PaymentIntent associated with the invoice.",
        "invoice_payment_intent_requires_action",
        { payment_intent: { ...paymentIntent, next_action: { type: "use_stripe_sdk" } } },
      );
    }
    return stripeError(402, "card_error", "Your card was declined.", "card_declined", {
      decline_code: "generic_decline",
      payment_intent: paymentIntent,
    });
  }

  function route(method: string, path: string, query: Json, body: Json): Answer {
    if (method === "POST" && path === "/v1/customers") {
      const id = nextId("cus");
      const customer = newCustomer(id, body);
      customers.set(id, customer);
      return { status: 200, body: copy(customer) };
    }
    const customerMatch = /^\/v1\/customers\/([^/]+)$/.exec(path);
    if (customerMatch) {
      const id = customerMatch[1] as string;
      const customer = customerRecord(id);
      if (!customer) {
        if (method === "GET") return { status: 200, body: { id, object: "customer", deleted: true } };
        return noSuch("customer", id);
      }
      if (method === "GET") return { status: 200, body: copy(customer) };
      if (method === "POST") {
        const settings = body.invoice_settings as Json | undefined;
        const paymentMethod = settings?.default_payment_method;
        if (typeof paymentMethod === "string" && paymentMethod !== "" && !attachedTo(id, paymentMethod)) {
          return noSuch("PaymentMethod", paymentMethod, "invoice_settings[default_payment_method]");
        }
        if (typeof paymentMethod === "string") {
          (customer.invoice_settings as Json).default_payment_method = paymentMethod === "" ? null : paymentMethod;
        }
        if (body.email !== undefined) customer.email = body.email === "" ? null : body.email;
        if (body.metadata) {
          const metadata = { ...(customer.metadata as Record<string, string>) };
          for (const [key, value] of Object.entries(body.metadata as Record<string, string>)) {
            if (value === "") delete metadata[key];
            else metadata[key] = value;
          }
          customer.metadata = metadata;
        }
        return { status: 200, body: copy(customer) };
      }
    }
    const customerCardsMatch = /^\/v1\/customers\/([^/]+)\/payment_methods$/.exec(path);
    if (method === "GET" && customerCardsMatch) {
      const id = customerCardsMatch[1] as string;
      if (!customerRecord(id)) return noSuch("customer", id);
      const limit = Math.min(Math.max(Number(query.limit ?? 10), 1), 100);
      const type = typeof query.type === "string" ? query.type : undefined;
      const all = [...(customerCards.get(id) ?? [])]
        .reverse()
        .map((pm) => paymentMethods.get(pm) as Json)
        .filter((pm) => !type || pm.type === type);
      return {
        status: 200,
        body: { object: "list", url: path, has_more: all.length > limit, data: all.slice(0, limit).map(copy) },
      };
    }
    if (method === "POST" && path === "/v1/invoices") return createInvoice(body);
    if (method === "POST" && path === "/v1/invoiceitems") return createInvoiceItem(body);
    const invoiceMatch = /^\/v1\/invoices\/([^/]+)(?:\/(finalize|pay|void))?$/.exec(path);
    if (invoiceMatch) {
      const id = invoiceMatch[1] as string;
      const action = invoiceMatch[2];
      const invoice = invoices.get(id);
      if (!invoice) return noSuch("invoice", id);
      if (method === "GET" && !action) return { status: 200, body: copy(invoice) };
      if (method === "DELETE" && !action) {
        if (invoice.status !== "draft") {
          return stripeError(400, "invalid_request_error", `You can only delete draft invoices; ${id} is ${invoice.status}.`);
        }
        invoices.delete(id);
        return { status: 200, body: { id, object: "invoice", deleted: true } };
      }
      if (method === "POST" && action) return invoiceAction(invoice, action, body);
    }
    if (method === "POST" && path === "/v1/checkout/sessions") {
      const items = (body.line_items as Json[] | undefined) ?? [];
      if (body.mode === "setup") {
        if (items.length > 0) {
          return stripeError(400, "invalid_request_error", "You cannot pass `line_items` in `setup` mode.", "parameter_unknown", {
            param: "line_items",
          });
        }
        if (body.currency === undefined && body.payment_method_types === undefined) {
          return stripeError(
            400,
            "invalid_request_error",
            "`currency` is required in setup mode when `payment_method_types` is not set.",
            "parameter_missing",
            { param: "currency" },
          );
        }
      }
      const id = nextId(body.mode === "subscription" ? "cs_test_sub" : body.mode === "setup" ? "cs_test_setup" : "cs_test_pay");
      sessionPrices.set(id, items.flatMap((item) => (typeof item.price === "string" ? [item.price] : [])));
      return {
        status: 200,
        body: {
          id,
          object: "checkout.session",
          mode: body.mode,
          customer: body.customer ?? null,
          client_reference_id: body.client_reference_id ?? null,
          metadata: body.metadata ?? {},
          success_url: body.success_url,
          cancel_url: body.cancel_url,
          expires_at: Number(body.expires_at ?? now() + 86_400),
          currency: body.currency ?? null,
          payment_intent: null,
          setup_intent: null,
          // setup mode pays nothing: "no_payment_required", as Stripe says of it
          payment_status: body.mode === "setup" ? "no_payment_required" : "unpaid",
          status: "open",
          url: `https://checkout.stripe.test/c/pay/${id}`,
        },
      };
    }
    if (method === "POST" && path === "/v1/billing_portal/sessions") {
      const id = nextId("bps");
      return {
        status: 200,
        body: {
          id,
          object: "billing_portal.session",
          customer: body.customer,
          return_url: body.return_url,
          url: `https://billing.stripe.test/p/session/${id}`,
        },
      };
    }
    const subscriptionMatch = /^\/v1\/subscriptions\/([^/]+)$/.exec(path);
    if (subscriptionMatch) {
      const subscription = subscriptions.get(subscriptionMatch[1] as string);
      if (!subscription) return stripeError(404, "invalid_request_error", "No such subscription", "resource_missing");
      if (method === "GET") return { status: 200, body: subscription };
      if (method === "POST") return { status: 200, body: updateSubscription(subscription, body) };
    }
    const lineItemsMatch = /^\/v1\/checkout\/sessions\/([^/]+)\/line_items$/.exec(path);
    if (method === "GET" && lineItemsMatch) {
      const prices = sessionPrices.get(lineItemsMatch[1] as string);
      if (!prices) return stripeError(404, "invalid_request_error", "No such checkout.session", "resource_missing");
      return {
        status: 200,
        body: {
          object: "list",
          url: path,
          has_more: false,
          data: prices.map((price) => ({
            id: nextId("li"),
            object: "item",
            quantity: 1,
            price: { id: price, object: "price", type: "one_time", unit_amount: unitAmounts[price] ?? null },
          })),
        },
      };
    }
    if (method === "GET" && path === "/v1/invoice_payments") {
      const payment = (query.payment ?? {}) as Json;
      if (typeof query.invoice === "string" && payment.payment_intent === undefined) {
        const paidBy = [...invoicePayments].filter(([, invoice]) => invoice === query.invoice).map(([paymentIntent]) => paymentIntent);
        return {
          status: 200,
          body: {
            object: "list",
            url: "/v1/invoice_payments",
            has_more: false,
            data: paidBy.map((paymentIntent) => ({
              id: nextId("inpay"),
              object: "invoice_payment",
              invoice: query.invoice,
              is_default: true,
              status: "paid",
              payment: { type: "payment_intent", payment_intent: paymentIntent },
            })),
          },
        };
      }
      const invoice = typeof payment.payment_intent === "string" ? invoicePayments.get(payment.payment_intent) : undefined;
      return {
        status: 200,
        body: {
          object: "list",
          url: "/v1/invoice_payments",
          has_more: false,
          data: invoice
            ? [
                {
                  id: nextId("inpay"),
                  object: "invoice_payment",
                  invoice,
                  is_default: true,
                  status: "paid",
                  payment: { type: "payment_intent", payment_intent: payment.payment_intent },
                },
              ]
            : [],
        },
      };
    }
    return stripeError(404, "invalid_request_error", `Unrecognized request URL (${method}: ${path})`);
  }

  function updateSubscription(subscription: Json, body: Json): Json {
    const items = subscription.items as { data: Json[] };
    const changes: { item: Json; from: string; to: string }[] = [];
    for (const change of (body.items as Json[] | undefined) ?? []) {
      const item = items.data.find((candidate) => candidate.id === change.id);
      if (item && typeof change.price === "string") {
        const from = (item.price as Json).id as string;
        // like Stripe, an unchanged price prorates nothing
        if (from !== change.price) changes.push({ item, from, to: change.price });
        item.price = { ...(item.price as Json), id: change.price };
      }
    }
    if (body.cancel_at_period_end !== undefined) subscription.cancel_at_period_end = body.cancel_at_period_end === "true";
    if (body.metadata) {
      const metadata = { ...(subscription.metadata as Record<string, string>) };
      for (const [key, value] of Object.entries(body.metadata as Record<string, string>)) {
        if (value === "") delete metadata[key];
        else metadata[key] = value;
      }
      subscription.metadata = metadata;
    }
    if (body.proration_behavior === "always_invoice") {
      const at = body.proration_date === undefined ? now() : Number(body.proration_date);
      const invoice = prorationInvoice(subscription, changes, at);
      invoices.set(invoice.id as string, invoice);
      subscription.latest_invoice = invoice.id;
      const expand = (body.expand as string[] | undefined) ?? [];
      if (expand.includes("latest_invoice")) return { ...subscription, latest_invoice: invoice };
    }
    return subscription;
  }

  /** Stripe's proration of price changes at `at` (epoch seconds), invoiced at once. */
  function prorationInvoice(subscription: Json, changes: { item: Json; from: string; to: string }[], at: number): Json {
    const id = nextId("in");
    let priced = true;
    const lines = changes.flatMap(({ item, from, to }) => {
      const start = item.current_period_start as number;
      const end = item.current_period_end as number;
      const left = (end - Math.min(Math.max(at, start), end)) / (end - start);
      const line = (price: string, sign: 1 | -1) => {
        const unit = unitAmounts[price];
        if (unit === undefined) priced = false;
        return {
          id: nextId("il"),
          object: "line_item",
          invoice: id,
          amount: sign * Math.round((unit ?? 0) * left),
          period: { start: at, end },
          pricing: { type: "price_details", price_details: { price, product: `prod_${price}` } },
          parent: {
            type: "subscription_item_details",
            subscription_item_details: { subscription: subscription.id, subscription_item: item.id, proration: true },
          },
        };
      };
      return [line(from, -1), line(to, 1)];
    });
    const prorated = Math.max(0, lines.reduce((sum, line) => sum + line.amount, 0));
    const total = state.prorationAmount ?? (priced ? prorated : 1_500);
    return {
      id,
      object: "invoice",
      status: state.prorationStatus,
      customer: subscription.customer,
      billing_reason: "subscription_update",
      amount_due: total,
      amount_paid: state.prorationStatus === "paid" ? total : 0,
      parent: {
        type: "subscription_details",
        subscription_details: { subscription: subscription.id, metadata: { ...(subscription.metadata as Json) } },
      },
      lines: { object: "list", data: lines, has_more: false },
    };
  }

  async function handle(request: IncomingMessage, response: ServerResponse) {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const url = new URL(request.url ?? "/", "http://127.0.0.1");
    const method = request.method ?? "GET";
    const text = Buffer.concat(chunks).toString("utf8");
    const header = (name: string) => {
      const value = request.headers[name];
      return Array.isArray(value) ? value[0] : value;
    };
    const recorded: RecordedRequest = {
      method,
      path: url.pathname,
      query: parseForm(url.search.slice(1)),
      body: parseForm(text),
      idempotencyKey: header("idempotency-key"),
      stripeVersion: header("stripe-version"),
      authorization: header("authorization"),
    };
    requests.push(recorded);
    const delay = delays.shift();
    if (delay) {
      served.delays++;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }

    const send = (status: number, body: Json, headers: Record<string, string> = {}) => {
      if (response.destroyed) {
        served.abandoned++;
        return;
      }
      response.writeHead(status, { "content-type": "application/json", "request-id": `req_${counter}`, ...headers });
      response.end(JSON.stringify(body));
    };
    const faultIndex = faults.findIndex(
      (fault) => (!fault.match || url.pathname.startsWith(fault.match)) && (!fault.method || fault.method === method),
    );
    const replayKey = method === "POST" ? recorded.idempotencyKey : undefined;
    // Parameters compared as parsed, like Stripe does (not byte for byte): the same params in another order match.
    const fingerprint = `${method} ${url.pathname} ${canonical(recorded.body)}`;
    if (faultIndex >= 0) {
      const [fault] = faults.splice(faultIndex, 1) as [Fault];
      served.failures++;
      const body = fault.body ?? stripeError(fault.status, "api_error", "Injected failure").body;
      if (fault.keep && replayKey && !replays.has(replayKey)) {
        replays.set(replayKey, { request: fingerprint, status: fault.status, body, ...(fault.headers ? { headers: fault.headers } : {}) });
      }
      send(fault.status, body, fault.headers);
      return;
    }
    const replay = replayKey ? replays.get(replayKey) : undefined;
    if (replay) {
      if (replay.request !== fingerprint) {
        served.idempotencyErrors++;
        const refused = stripeError(
          400,
          "idempotency_error",
          `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${replayKey}' if you meant to execute a different request.`,
        );
        send(refused.status, refused.body);
        return;
      }
      send(replay.status, replay.body, { ...replay.headers, "idempotent-replayed": "true" });
      return;
    }
    const answer = route(method, url.pathname, recorded.query, recorded.body);
    if (replayKey && (answer.status < 500 || answer.keep)) {
      replays.set(replayKey, { request: fingerprint, status: answer.status, body: answer.body, ...(answer.headers ? { headers: answer.headers } : {}) });
    }
    if (answer.hangUp) {
      // Acted, and the caller never hears it: no answer until the client gives up (its timeout).
      // Not a reset connection: the SDK retries a reset once whatever its maxNetworkRetries, and
      // would get the replay at once.
      served.hangUps++;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          response.destroy();
          resolve();
        }, HANG_UP_LIMIT_MS);
        response.once("close", () => {
          clearTimeout(timer);
          resolve();
        });
      });
      return;
    }
    send(answer.status, answer.body, answer.headers);
  }

  const server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      response.writeHead(500).end(JSON.stringify({ error: { type: "api_error", message: String(error) } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  serverUrl = `http://127.0.0.1:${port}`;
  const payRequest = /^\/v1\/invoices\/([^/]+)\/pay$/;

  return {
    url: serverUrl,
    requests,
    served,
    requestsTo: (prefix, method) =>
      requests.filter((request) => request.path.startsWith(prefix) && (!method || request.method === method)),
    failNext(fault, times = 1) {
      for (let i = 0; i < times; i++) faults.push(fault);
    },
    delayNext(ms, times = 1) {
      for (let i = 0; i < times; i++) delays.push(ms);
    },
    subscriptions,
    invoices,
    invoicePayments,
    sessionPrices,
    customers,
    paymentMethods,
    savePaymentMethod(customerId, options = {}) {
      const customer = customerRecord(customerId);
      if (!customer) throw new Error(`customer ${customerId} is deleted`);
      const id = nextId("pm");
      paymentMethods.set(id, {
        id,
        object: "payment_method",
        type: "card",
        customer: customerId,
        created: now(),
        livemode: false,
        allow_redisplay: "always",
        billing_details: { address: null, email: null, name: null, phone: null },
        metadata: {},
        card: { brand: "visa", last4: "4242", exp_month: 12, exp_year: new Date().getUTCFullYear() + 3, country: "US", funding: "credit", ...options.card },
      });
      customerCards.set(customerId, [...(customerCards.get(customerId) ?? []), id]);
      if (options.default) (customer.invoice_settings as Json).default_payment_method = id;
      return id;
    },
    detachPaymentMethod(paymentMethodId) {
      const paymentMethod = paymentMethods.get(paymentMethodId);
      const customerId = paymentMethod?.customer as string | undefined;
      if (!paymentMethod || !customerId) return;
      paymentMethod.customer = null;
      customerCards.set(customerId, (customerCards.get(customerId) ?? []).filter((id) => id !== paymentMethodId));
      const settings = customers.get(customerId)?.invoice_settings as Json | undefined;
      if (settings?.default_payment_method === paymentMethodId) settings.default_payment_method = null;
    },
    deleteCustomer(customerId) {
      const customer = customers.get(customerId) ?? newCustomer(customerId, {});
      customer.deleted = true;
      customers.set(customerId, customer);
    },
    setPayOutcome(outcome, options = {}) {
      if (options.times !== undefined) {
        for (let i = 0; i < options.times; i++) queuedOutcomes.push({ customer: options.customer, outcome });
      } else if (options.customer !== undefined) payOutcomes.byCustomer.set(options.customer, outcome);
      else payOutcomes.fallback = outcome;
    },
    payAttempts: (customerId) =>
      requests.filter((request) => {
        const match = request.method === "POST" ? payRequest.exec(request.path) : null;
        return match !== null && invoices.get(match[1] as string)?.customer === customerId;
      }).length,
    chargesOf: (customerId) => charges.get(customerId) ?? 0,
    invoicesOf: (customerId) => (customerInvoices.get(customerId) ?? []).flatMap((id): Json[] => {
        const invoice = invoices.get(id);
        return invoice ? [invoice] : [];
      }),
    invoicesCreated: (customerId) => (customerInvoices.get(customerId) ?? []).length,
    markInvoicePaid(invoiceId) {
      const invoice = invoices.get(invoiceId);
      if (!invoice) throw new Error(`the test Stripe server made no invoice ${invoiceId}`);
      if (invoice.status !== "open") throw new Error(`invoice ${invoiceId} is ${invoice.status}, not open`);
      invoice.attempted = true;
      invoice.attempt_count = ((invoice.attempt_count as number | undefined) ?? 0) + 1;
      markPaid(invoice);
      return invoice;
    },
    paymentIntentOf: (invoiceId) => [...invoicePayments].find(([, invoice]) => invoice === invoiceId)?.[0],
    get prorationAmount() {
      return state.prorationAmount;
    },
    set prorationAmount(value: number | undefined) {
      state.prorationAmount = value;
    },
    get prorationStatus() {
      return state.prorationStatus;
    },
    set prorationStatus(value: string) {
      state.prorationStatus = value;
    },
    reset() {
      state.prorationStatus = "paid";
      state.prorationAmount = undefined;
      requests.length = 0;
      faults.length = 0;
      delays.length = 0;
      payOutcomes.fallback = "succeeded";
      payOutcomes.byCustomer.clear();
      queuedOutcomes.length = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
