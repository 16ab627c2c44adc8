import { readFileSync } from "node:fs";
import { PINNED_API_VERSION } from "../../lib/billing/index.js";
import { uniqueStripeId } from "./stripe-events.js";

/**
 * Test events built from Stripe's own example objects (test/fixtures/stripe/fixtures3.json, see
 * NOTICE.md): each starts from the official object of its resource and only *replaces* values the
 * scenario needs (ids, customer, metadata, prices, amounts, statuses, periods). `replace` refuses a
 * key the official object lacks, so no field is invented; the one addition a real event's shape
 * requires is named where it is made (`pricing.price_details` on invoice lines, see `invoiceLine`).
 */

// biome-ignore lint/suspicious/noExplicitAny: Stripe objects are arbitrary JSON
type Json = any;

const resources: Record<string, Json> = JSON.parse(
  readFileSync(new URL("../fixtures/stripe/fixtures3.json", import.meta.url), "utf8"),
).resources;

/** A copy of Stripe's official object of a resource (`invoice`, `checkout.session`, ...). */
export function official(resource: string): Json {
  const object = resources[resource];
  if (!object) throw new Error(`fixtures3.json has no resource ${resource}`);
  return structuredClone(object);
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * Deep-replaces values of `base` with `patch`'s; objects recurse where both sides are objects.
 * A key `base` does not have is an error: these events carry only fields Stripe's object carries
 * (`metadata` is the account's own free-form map: replaced whole).
 */
export function replace(base: Json, patch: Json, path = ""): Json {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(patch)) {
    if (!(key in base)) throw new Error(`Stripe's official object has no field ${path}${key}`);
    out[key] = key !== "metadata" && isObject(base[key]) && isObject(value) ? replace(base[key], value, `${path}${key}.`) : value;
  }
  return out;
}

/** `object` without the field at `path` (dot-separated; numeric parts index arrays). */
export function without(object: Json, path: string): Json {
  const copy = structuredClone(object);
  const parts = path.split(".");
  const last = parts.pop() as string;
  let at = copy;
  for (const part of parts) at = at[part];
  if (!(last in at)) throw new Error(`no field ${path} to remove`);
  delete at[last];
  return copy;
}

/** An event envelope built like Stripe's `event` resource, of the pinned API version. */
export function officialEvent(type: string, object: Json, options: { created?: number; id?: string } = {}): Json {
  const envelope = replace(official("event"), {
    id: options.id ?? uniqueStripeId("evt"),
    type,
    api_version: PINNED_API_VERSION,
    created: options.created ?? Math.floor(Date.now() / 1000),
  });
  return { ...envelope, data: { ...envelope.data, object } };
}

export function checkoutSession(input: {
  id?: string;
  mode: "payment" | "subscription";
  customer: string;
  paymentStatus: "paid" | "unpaid" | "no_payment_required";
  status?: "open" | "complete" | "expired";
  paymentIntent?: string | null;
  subscription?: string | null;
  amountTotal?: number | null;
  metadata?: Record<string, string>;
  clientReferenceId?: string | null;
}): Json {
  return replace(official("checkout.session"), {
    id: input.id ?? uniqueStripeId("cs_test"),
    mode: input.mode,
    customer: input.customer,
    payment_status: input.paymentStatus,
    status: input.status ?? "complete",
    payment_intent: input.paymentIntent ?? null,
    subscription: input.subscription ?? null,
    amount_total: input.amountTotal ?? null,
    metadata: input.metadata ?? {},
    client_reference_id: input.clientReferenceId ?? null,
  });
}

export interface LineInput {
  price: string;
  proration: boolean;
  amount: number;
  /** epoch seconds */
  period: { start: number; end: number };
  subscription: string;
}

/**
 * An invoice line of a subscription item, from the official `line_item` of the official invoice.
 * The official line's `pricing` is `{ type: "price_details", unit_amount_decimal }` without the
 * `price_details` its type announces (Stripe's SDK types: `price_details?: { price, product }`);
 * a real subscription line carries it, so it is added (the one addition). The official `parent`
 * fills both `invoice_item_details` and `subscription_item_details`; a real line fills the one
 * its `type` names and leaves the other null.
 */
export function invoiceLine(invoiceId: string, line: LineInput): Json {
  const [base] = official("invoice").lines.data;
  const replaced = replace(base, {
    id: uniqueStripeId("il"),
    invoice: invoiceId,
    amount: line.amount,
    subtotal: line.amount,
    period: line.period,
    parent: {
      type: "subscription_item_details",
      invoice_item_details: null,
      subscription_item_details: {
        invoice_item: null,
        proration: line.proration,
        proration_details: { credited_items: null },
        subscription: line.subscription,
        subscription_item: `si_${line.subscription}`,
      },
    },
  });
  return { ...replaced, pricing: { ...replaced.pricing, price_details: { price: line.price, product: "prod_creditgate" } } };
}

export function invoice(input: {
  id?: string;
  customer: string;
  subscription: string;
  metadata?: Record<string, string> | null;
  billingReason: string;
  status: "paid" | "open";
  amountPaid: number;
  amountDue?: number;
  lines: Json[];
}): Json {
  const id = input.id ?? uniqueStripeId("in");
  return replace(official("invoice"), {
    id,
    customer: input.customer,
    billing_reason: input.billingReason,
    status: input.status,
    amount_due: input.amountDue ?? input.amountPaid,
    amount_paid: input.amountPaid,
    amount_remaining: input.status === "paid" ? 0 : (input.amountDue ?? input.amountPaid),
    parent: {
      type: "subscription_details",
      quote_details: null,
      subscription_details: { subscription: input.subscription, metadata: input.metadata ?? null },
    },
    lines: { data: input.lines, url: `/v1/invoices/${id}/lines` },
  });
}

export function subscription(input: {
  id: string;
  customer: string;
  price: string;
  status: string;
  /** epoch seconds */
  periodStart: number;
  periodEnd: number;
  cancelAtPeriodEnd?: boolean;
  metadata?: Record<string, string>;
  latestInvoice?: string | null;
}): Json {
  const base = official("subscription");
  const [item] = base.items.data;
  return replace(base, {
    id: input.id,
    customer: input.customer,
    status: input.status,
    cancel_at_period_end: input.cancelAtPeriodEnd ?? false,
    metadata: input.metadata ?? {},
    latest_invoice: input.latestInvoice ?? null,
    items: {
      data: [
        replace(item, {
          id: `si_${input.id}`,
          subscription: input.id,
          price: { id: input.price },
          plan: { id: input.price },
          current_period_start: input.periodStart,
          current_period_end: input.periodEnd,
        }),
      ],
      url: `/v1/subscription_items?subscription=${input.id}`,
    },
  });
}

/**
 * The same invoice as a webhook endpoint pinned to an API version before 2025-03-31.basil sends
 * it (Stripe's changelog, "basil"): the invoice's `subscription` and `subscription_details` at its
 * top level instead of `parent.subscription_details`; each line's `price` (an object) and
 * `proration` at the line's top level instead of `pricing.price_details.price` and
 * `parent.subscription_item_details.proration`. Moved, nothing invented: every value comes from
 * the new-shape invoice given.
 */
export function olderApiInvoice(newShape: Json): Json {
  const { parent, ...rest } = structuredClone(newShape);
  const details = parent?.subscription_details;
  return {
    ...rest,
    subscription: details?.subscription ?? null,
    subscription_details: { metadata: details?.metadata ?? null },
    lines: {
      ...rest.lines,
      data: rest.lines.data.map((line: Json) => {
        const { pricing, parent: lineParent, ...lineRest } = line;
        const item = lineParent?.subscription_item_details ?? lineParent?.invoice_item_details;
        return {
          ...lineRest,
          type: lineParent?.type === "invoice_item_details" ? "invoiceitem" : "subscription",
          subscription: item?.subscription ?? null,
          subscription_item: lineParent?.subscription_item_details?.subscription_item ?? null,
          proration: item?.proration ?? false,
          price: { id: pricing.price_details.price, object: "price", product: pricing.price_details.product },
          unit_amount_excluding_tax: pricing.unit_amount_decimal ?? null,
        };
      }),
    },
  };
}

/**
 * The same subscription as an endpoint pinned before 2025-03-31.basil sends it: the period on the
 * subscription (`current_period_start` / `current_period_end`) and not on its items.
 */
export function olderApiSubscription(newShape: Json): Json {
  const copy = structuredClone(newShape);
  const [first] = copy.items.data;
  copy.current_period_start = first.current_period_start;
  copy.current_period_end = first.current_period_end;
  for (const item of copy.items.data) {
    delete item.current_period_start;
    delete item.current_period_end;
  }
  return copy;
}

export function charge(input: { id: string; paymentIntent: string; customer: string; amount: number; refunded: number }): Json {
  return replace(official("charge"), {
    id: input.id,
    payment_intent: input.paymentIntent,
    customer: input.customer,
    amount: input.amount,
    amount_captured: input.amount,
    captured: true,
    amount_refunded: input.refunded,
    refunded: input.refunded === input.amount,
  });
}

export function dispute(input: { id: string; charge: string; paymentIntent: string; amount: number; status: string }): Json {
  return replace(official("dispute"), {
    id: input.id,
    charge: input.charge,
    payment_intent: input.paymentIntent,
    amount: input.amount,
    status: input.status,
  });
}

export function refund(input: {
  id: string;
  charge: string;
  paymentIntent: string;
  amount: number;
  /** epoch seconds */
  created: number;
  status: string;
}): Json {
  return replace(official("refund"), {
    id: input.id,
    charge: input.charge,
    payment_intent: input.paymentIntent,
    amount: input.amount,
    created: input.created,
    status: input.status,
  });
}

/** A line's `parent` in full, as the current API sends it: the details its `type` names, the other null. */
function fullLineParent(parent: Json): Json {
  if (!parent) return null;
  if (parent.type === "invoice_item_details") {
    const details = parent.invoice_item_details ?? {};
    return {
      type: "invoice_item_details",
      invoice_item_details: {
        invoice_item: details.invoice_item ?? null,
        proration: details.proration ?? false,
        proration_details: details.proration_details ?? { credited_items: null },
        subscription: details.subscription ?? null,
      },
      subscription_item_details: null,
    };
  }
  const details = parent.subscription_item_details ?? {};
  return {
    type: "subscription_item_details",
    invoice_item_details: null,
    subscription_item_details: {
      invoice_item: details.invoice_item ?? null,
      proration: details.proration ?? false,
      proration_details: details.proration_details ?? { credited_items: null },
      subscription: details.subscription ?? null,
      subscription_item: details.subscription_item ?? null,
    },
  };
}

/** An invoice's `parent` in full: null (a one-off invoice), or the details its `type` names and the others null. */
function fullInvoiceParent(parent: Json): Json {
  if (!parent) return null;
  return {
    type: parent.type,
    quote_details: parent.quote_details ?? null,
    subscription_details: parent.subscription_details ?? null,
  };
}

/**
 * Stripe's official invoice carrying an invoice the loopback Stripe server stored
 * (`server.invoices.get(id)`: a one-off invoice of `POST /v1/invoices`, or a proration invoice):
 * every value the server stored replaces the official one (a field the official invoice lacks is an
 * error, as in `replace`), the official example's incidental values that would contradict it
 * (totals, overpayment, shipping, finalization error, due date) are replaced too. Lines are built
 * from the official line like `invoiceLine` (the one addition: `pricing.price_details`), `parent`s
 * filled in full (the details the `type` names, the others null).
 */
export function officialInvoiceOf(stored: Json): Json {
  const base = official("invoice");
  const [baseLine] = base.lines.data;
  const { lines, parent, ...rest } = structuredClone(stored);
  const data = (lines?.data ?? []).map((line: Json) => {
    const { pricing, parent: lineParent, ...lineRest } = line;
    const replaced = replace(baseLine, {
      currency: rest.currency ?? "usd",
      description: null,
      metadata: {},
      quantity: 1,
      subtotal: lineRest.amount,
      discount_amounts: [],
      ...lineRest,
    });
    return { ...replaced, pricing: { ...baseLine.pricing, ...pricing }, parent: fullLineParent(lineParent) };
  });
  const total = data.reduce((sum: number, line: Json) => sum + line.amount, 0);
  const amountDue = rest.amount_due ?? total;
  const amountPaid = rest.amount_paid ?? 0;
  const invoice = replace(base, {
    subtotal: total,
    subtotal_excluding_tax: total,
    total,
    total_excluding_tax: total,
    amount_remaining: rest.status === "paid" ? 0 : amountDue - amountPaid,
    amount_overpaid: 0,
    shipping_cost: null,
    last_finalization_error: null,
    from_invoice: null,
    due_date: null,
    next_payment_attempt: null,
    webhooks_delivered_at: null,
    subscription: null,
    ...rest,
    lines: { data, has_more: false, url: `/v1/invoices/${rest.id}/lines` },
  });
  return { ...invoice, parent: fullInvoiceParent(parent) };
}

/**
 * An auto top-up invoice (a one-off invoice of one credit pack, charged off-session) as Stripe
 * sends it, from the official invoice: `parent: null`, one invoice-item line for the pack's price.
 */
export function topUpInvoice(input: {
  id?: string;
  customer: string;
  price: string;
  amount: number;
  status?: "paid" | "open" | "void";
  metadata?: Record<string, string>;
  paymentMethod?: string | null;
  /** epoch seconds */
  created?: number;
  hostedInvoiceUrl?: string | null;
}): Json {
  const id = input.id ?? uniqueStripeId("in");
  const created = input.created ?? Math.floor(Date.now() / 1000);
  const status = input.status ?? "paid";
  return officialInvoiceOf({
    id,
    object: "invoice",
    customer: input.customer,
    status,
    billing_reason: "manual",
    collection_method: "charge_automatically",
    auto_advance: false,
    currency: "usd",
    default_payment_method: input.paymentMethod ?? null,
    metadata: input.metadata ?? {},
    parent: null,
    amount_due: input.amount,
    amount_paid: status === "paid" ? input.amount : 0,
    amount_remaining: status === "open" ? input.amount : 0,
    attempt_count: status === "void" ? 0 : 1,
    attempted: status !== "void",
    hosted_invoice_url: input.hostedInvoiceUrl ?? `https://invoice.stripe.test/i/${id}`,
    created,
    effective_at: created,
    period_start: created,
    period_end: created,
    status_transitions: {
      finalized_at: created,
      marked_uncollectible_at: null,
      paid_at: status === "paid" ? created : null,
      voided_at: status === "void" ? created : null,
    },
    lines: {
      data: [
        {
          id: uniqueStripeId("il"),
          object: "line_item",
          invoice: id,
          amount: input.amount,
          currency: "usd",
          quantity: 1,
          period: { start: created, end: created },
          metadata: input.metadata ?? {},
          pricing: {
            type: "price_details",
            price_details: { price: input.price, product: `prod_${input.price}` },
            unit_amount_decimal: String(input.amount),
          },
          parent: {
            type: "invoice_item_details",
            invoice_item_details: { invoice_item: uniqueStripeId("ii"), proration: false },
          },
        },
      ],
    },
  });
}

/**
 * The event Stripe sends about an invoice (`invoice.paid` unless told): an envelope like
 * `officialEvent`'s, pending one webhook, its object `officialInvoiceOf(invoice)` — pass the
 * loopback server's stored invoice (`server.invoices.get(id)`) or a `topUpInvoice(...)`.
 */
export function invoiceEvent(invoice: Json, options: { type?: string; created?: number; id?: string } = {}): Json {
  const event = officialEvent(options.type ?? "invoice.paid", officialInvoiceOf(invoice), {
    ...(options.created !== undefined ? { created: options.created } : {}),
    ...(options.id !== undefined ? { id: options.id } : {}),
  });
  return { ...event, pending_webhooks: 1, request: { id: null, idempotency_key: null } };
}
