import { z } from "zod";
import { userIdSchema } from "../ledger/validation.js";

/**
 * The parts of Stripe objects billing reads, shaped as in the SDK's pinned API version
 * (2026-10-28.endive, "basil" and later): subscription period dates live on the subscription
 * items; an invoice names its subscription under `parent.subscription_details` and its prices
 * under `lines.data[].pricing.price_details`; an invoice no longer names its charge or payment
 * intent (invoice payments do). Parsed loosely (unknown fields pass), strictly where we depend.
 */
const idOrObject = z
  .union([z.string().min(1), z.object({ id: z.string().min(1) }).loose()])
  .transform((value) => (typeof value === "string" ? value : value.id));

const metadataSchema = z.record(z.string(), z.string()).nullish();

export const subscriptionSchema = z
  .object({
    id: z.string().startsWith("sub_"),
    object: z.literal("subscription"),
    status: z.string(),
    customer: idOrObject,
    cancel_at_period_end: z.boolean(),
    metadata: metadataSchema,
    latest_invoice: idOrObject.nullish(),
    items: z.object({
      data: z
        .array(
          z
            .object({
              id: z.string(),
              current_period_start: z.number().int(),
              current_period_end: z.number().int(),
              price: z.object({ id: z.string() }).loose(),
            })
            .loose(),
        )
        .min(1),
    }),
  })
  .loose();
export type StripeSubscription = z.infer<typeof subscriptionSchema>;

export const checkoutSessionSchema = z
  .object({
    id: z.string().startsWith("cs_"),
    object: z.literal("checkout.session"),
    mode: z.string(),
    customer: idOrObject.nullish(),
    subscription: idOrObject.nullish(),
    payment_intent: idOrObject.nullish(),
    payment_status: z.string(),
    client_reference_id: z.string().nullish(),
    metadata: metadataSchema,
    amount_total: z.number().int().nullish(),
  })
  .loose();
export type StripeCheckoutSession = z.infer<typeof checkoutSessionSchema>;

const invoiceLineSchema = z
  .object({
    pricing: z.object({ price_details: z.object({ price: idOrObject }).loose().nullish() }).loose().nullish(),
    parent: z
      .object({
        subscription_item_details: z.object({ proration: z.boolean() }).loose().nullish(),
        invoice_item_details: z.object({ proration: z.boolean() }).loose().nullish(),
      })
      .loose()
      .nullish(),
  })
  .loose();

export const invoiceSchema = z
  .object({
    id: z.string().startsWith("in_"),
    object: z.literal("invoice"),
    customer: idOrObject.nullish(),
    billing_reason: z.string().nullish(),
    amount_paid: z.number().int(),
    parent: z
      .object({
        subscription_details: z
          .object({ subscription: idOrObject, metadata: metadataSchema })
          .loose()
          .nullish(),
      })
      .loose()
      .nullish(),
    lines: z.object({ data: z.array(invoiceLineSchema) }).loose().optional(),
  })
  .loose();
export type StripeInvoice = z.infer<typeof invoiceSchema>;

export const chargeSchema = z
  .object({
    id: z.string().startsWith("ch_").or(z.string().startsWith("py_")),
    object: z.literal("charge"),
    amount: z.number().int().min(0),
    amount_refunded: z.number().int().min(0),
    payment_intent: idOrObject.nullish(),
    customer: idOrObject.nullish(),
  })
  .loose();

export const disputeSchema = z
  .object({
    id: z.string().startsWith("dp_").or(z.string().startsWith("du_")),
    object: z.literal("dispute"),
    amount: z.number().int().min(0),
    charge: idOrObject,
    payment_intent: idOrObject.nullish(),
  })
  .loose();

/** A user id we wrote into metadata ourselves, if it is one (checked after signature verification). */
export function userIdFrom(...candidates: (string | null | undefined)[]): string | undefined {
  for (const candidate of candidates) {
    if (candidate && userIdSchema.safeParse(candidate).success) return candidate;
  }
  return undefined;
}

/** The invoice's subscription lines (not prorations) and their prices. */
export function subscriptionLinePrices(invoice: StripeInvoice): string[] {
  return (invoice.lines?.data ?? []).flatMap((line) => {
    const price = line.pricing?.price_details?.price;
    const proration = line.parent?.subscription_item_details?.proration ?? line.parent?.invoice_item_details?.proration;
    return price && proration !== true ? [price] : [];
  });
}
