import * as z from "zod/mini";
import "../zod-locale.js";
import { userIdSchema } from "../ledger/validation.js";

/**
 * The parts of Stripe objects billing reads, shaped as in the SDK's pinned API version
 * (2026-10-28.endive, "basil" and later): subscription period dates live on the subscription
 * items; an invoice names its subscription under `parent.subscription_details` and its prices
 * under `lines.data[].pricing.price_details`; an invoice no longer names its charge or payment
 * intent (invoice payments do). Parsed loosely (unknown fields pass), strictly where we depend.
 *
 * A webhook endpoint pinned to an older API version (before 2025-03-31.basil) sends the older
 * shapes of the same facts: the period on the subscription itself, an invoice's `subscription` and
 * `subscription_details` at its top level, a line's `price` (an object) and `proration` at the
 * line's top level. Both parse to the same facts; where an object carries both, the new shape wins.
 */
const idOrObject = z.pipe(
  z.union([z.string().check(z.minLength(1)), z.looseObject({ id: z.string().check(z.minLength(1)) })]),
  z.transform((value) => (typeof value === "string" ? value : value.id)),
);

const metadataSchema = z.nullish(z.record(z.string(), z.string()));

const periodBound = () => z.optional(z.number().check(z.int()));

const subscriptionObjectSchema = z.looseObject({
  id: z.string().check(z.startsWith("sub_")),
  object: z.literal("subscription"),
  status: z.string(),
  customer: idOrObject,
  cancel_at_period_end: z.boolean(),
  metadata: metadataSchema,
  latest_invoice: z.nullish(idOrObject),
  /** older API versions: the period on the subscription (basil moved it to each item) */
  current_period_start: periodBound(),
  current_period_end: periodBound(),
  items: z.object({
    data: z
      .array(
        z.looseObject({
          id: z.string(),
          current_period_start: periodBound(),
          current_period_end: periodBound(),
          price: z.looseObject({ id: z.string() }),
        }),
      )
      .check(z.minLength(1)),
  }),
});

/** Every item's period, from the item (pinned version) or else the subscription (older versions): required, a decision reads it. */
export const subscriptionSchema = z.pipe(
  subscriptionObjectSchema.check(
    z.refine(
      (subscription) =>
        subscription.items.data.every(
          (item) =>
            (item.current_period_start ?? subscription.current_period_start) !== undefined &&
            (item.current_period_end ?? subscription.current_period_end) !== undefined,
        ),
      { message: "subscription period: on neither its items nor the subscription" },
    ),
  ),
  z.transform((subscription) => ({
    ...subscription,
    items: {
      ...subscription.items,
      data: subscription.items.data.map((item) => ({
        ...item,
        current_period_start: (item.current_period_start ?? subscription.current_period_start) as number,
        current_period_end: (item.current_period_end ?? subscription.current_period_end) as number,
      })),
    },
  })),
);
export type StripeSubscription = z.infer<typeof subscriptionSchema>;

export const checkoutSessionSchema = z.looseObject({
  id: z.string().check(z.startsWith("cs_")),
  object: z.literal("checkout.session"),
  mode: z.string(),
  customer: z.nullish(idOrObject),
  subscription: z.nullish(idOrObject),
  payment_intent: z.nullish(idOrObject),
  payment_status: z.string(),
  client_reference_id: z.nullish(z.string()),
  metadata: metadataSchema,
  amount_total: z.nullish(z.number().check(z.int())),
});
export type StripeCheckoutSession = z.infer<typeof checkoutSessionSchema>;

/**
 * An invoice line, parsed only for what a decision reads: its price, whether it is a proration
 * (absent means no: Stripe's default, and only `true` excludes a line from the allowance), and
 * where its period starts (a proration's instant; the period's end is read by nothing). A line
 * that fails here drops the whole invoice, so nothing else of it may be required. Older API
 * versions put `price` (an object) and `proration` at the line's top level.
 */
const invoiceLineSchema = z.looseObject({
  /** epoch seconds; a proration line's period starts at its proration instant */
  period: z.nullish(z.looseObject({ start: z.number().check(z.int()), end: z.optional(z.number().check(z.int())) })),
  /** a proration line's sign tells the price it leaves (credited, negative) from the one it moves to */
  amount: z.nullish(z.number().check(z.int())),
  pricing: z.nullish(z.looseObject({ price_details: z.nullish(z.looseObject({ price: idOrObject })) })),
  price: z.nullish(idOrObject),
  proration: z.nullish(z.boolean()),
  parent: z.nullish(
    z.looseObject({
      subscription_item_details: z.nullish(z.looseObject({ proration: z.optional(z.boolean()) })),
      invoice_item_details: z.nullish(z.looseObject({ proration: z.optional(z.boolean()) })),
    }),
  ),
});

export const invoiceSchema = z.looseObject({
  id: z.string().check(z.startsWith("in_")),
  object: z.literal("invoice"),
  customer: z.nullish(idOrObject),
  billing_reason: z.nullish(z.string()),
  status: z.nullish(z.string()),
  amount_paid: z.number().check(z.int()),
  /** an invoice's own metadata: a one-off invoice's (auto top-up writes `autoTopUp`, its sequence number) */
  metadata: z.nullish(metadataSchema),
  parent: z.nullish(
    z.looseObject({
      subscription_details: z.nullish(z.looseObject({ subscription: idOrObject, metadata: metadataSchema })),
    }),
  ),
  /** older API versions: the subscription and its metadata snapshot at the invoice's top level */
  subscription: z.nullish(idOrObject),
  subscription_details: z.nullish(z.looseObject({ metadata: metadataSchema })),
  lines: z.optional(z.looseObject({ data: z.array(invoiceLineSchema) })),
});
export type StripeInvoice = z.infer<typeof invoiceSchema>;

export const chargeSchema = z.looseObject({
  id: z.union([z.string().check(z.startsWith("ch_")), z.string().check(z.startsWith("py_"))]),
  object: z.literal("charge"),
  amount: z.number().check(z.int(), z.minimum(0)),
  amount_refunded: z.number().check(z.int(), z.minimum(0)),
  payment_intent: z.nullish(idOrObject),
  customer: z.nullish(idOrObject),
});

export const disputeSchema = z.looseObject({
  id: z.union([z.string().check(z.startsWith("dp_")), z.string().check(z.startsWith("du_"))]),
  object: z.literal("dispute"),
  amount: z.number().check(z.int(), z.minimum(0)),
  charge: idOrObject,
  payment_intent: z.nullish(idOrObject),
});

/** A user id we wrote into metadata ourselves, if it is one (checked after signature verification). */
export function userIdFrom(...candidates: (string | null | undefined)[]): string | undefined {
  for (const candidate of candidates) {
    if (candidate && userIdSchema.safeParse(candidate).success) return candidate;
  }
  return undefined;
}

/** The invoice's subscription and the metadata snapshot it was billed with (either API shape). */
export function invoiceSubscription(invoice: StripeInvoice): { subscription: string | undefined; metadata: Record<string, string> } {
  const details = invoice.parent?.subscription_details;
  return {
    subscription: details?.subscription ?? invoice.subscription ?? undefined,
    metadata: details?.metadata ?? invoice.subscription_details?.metadata ?? {},
  };
}

type InvoiceLine = NonNullable<StripeInvoice["lines"]>["data"][number];
const isProration = (line: InvoiceLine) =>
  (line.parent?.subscription_item_details?.proration ?? line.parent?.invoice_item_details?.proration ?? line.proration) === true;
const linePrice = (line: InvoiceLine) => line.pricing?.price_details?.price ?? line.price ?? undefined;

/** The invoice's subscription lines (not prorations): their price and where their period starts (epoch seconds). */
export function subscriptionLines(invoice: StripeInvoice): { price: string; periodStart: number | undefined }[] {
  return (invoice.lines?.data ?? []).flatMap((line) => {
    const price = linePrice(line);
    return price && !isProration(line) ? [{ price, periodStart: line.period?.start }] : [];
  });
}

/** The invoice's proration lines: their price, amount and period (its start is the proration instant; epoch seconds). */
export function prorationLines(
  invoice: StripeInvoice,
): { price: string; amount: number | undefined; periodStart: number | undefined; periodEnd: number | undefined }[] {
  return (invoice.lines?.data ?? []).flatMap((line) => {
    const price = linePrice(line);
    return price && isProration(line)
      ? [{ price, amount: line.amount ?? undefined, periodStart: line.period?.start, periodEnd: line.period?.end }]
      : [];
  });
}

/**
 * A refund (charge.refund.updated, refund.failed). `created` tells which charge.refunded events
 * counted it; `status` whether its money went back to the merchant (failed, canceled).
 */
export const refundSchema = z.looseObject({
  id: z.string().check(z.minLength(1)),
  object: z.literal("refund"),
  amount: z.number().check(z.int(), z.minimum(0)),
  created: z.number().check(z.int()),
  status: z.nullish(z.string()),
  charge: z.nullish(idOrObject),
  payment_intent: z.nullish(idOrObject),
});

/** A dispute as charge.dispute.closed reports it: `status` says who kept the money. */
export const closedDisputeSchema = z.looseObject({
  id: z.union([z.string().check(z.startsWith("dp_")), z.string().check(z.startsWith("du_"))]),
  object: z.literal("dispute"),
  amount: z.number().check(z.int(), z.minimum(0)),
  charge: idOrObject,
  payment_intent: z.nullish(idOrObject),
  status: z.string(),
});
