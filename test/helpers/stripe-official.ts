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
