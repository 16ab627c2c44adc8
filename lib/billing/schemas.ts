import * as z from "zod/mini";
import "../zod-locale.js";
import { PACK_IDS, PLAN_IDS } from "../catalog.js";

/** Request bodies of the billing routes. Strict: an unknown field is a 400 naming it. */
const paidPlan = z.enum(PLAN_IDS).check(z.refine((plan) => plan !== "free", "the free plan needs no subscription"));

/** `{plan?, interval?}`; an empty body means pro, monthly. */
export const subscribeBody = z.pipe(
  z.optional(z.strictObject({ plan: z.optional(paidPlan), interval: z.optional(z.enum(["month", "year"])) })),
  z.transform((body) => body ?? {}),
);

export const packCheckoutBody = z.strictObject({ pack: z.enum(PACK_IDS) });

/**
 * PUT /v1/billing/auto-topup: the whole setting, every field (a PUT replaces it). The limits keep
 * a typo from becoming a runaway: at most 100 top-ups a month, a threshold below 100 million.
 */
export const autoTopUpBody = z.strictObject({
  enabled: z.boolean(),
  threshold: z.number().check(z.int(), z.minimum(1), z.maximum(100_000_000)),
  pack: z.enum(PACK_IDS),
  monthlyLimit: z.number().check(z.int(), z.minimum(1), z.maximum(100)),
});

export const changePlanBody = z.strictObject({ plan: z.enum(PLAN_IDS) });

/** portal and cancel take no input: no body, or an empty object. */
export const emptyBody = z.optional(z.strictObject({}));

/**
 * What the webhook accepts once the signature is verified: a Stripe event envelope. Loose: the
 * event's own fields (and `data.object`) are Stripe's, read by the handlers of each event type.
 */
export const stripeEventEnvelope = z.looseObject({
  // a pattern, not z.startsWith: that one becomes a JSON Schema `format` no validator knows
  id: z.string().check(z.regex(/^evt_/)),
  type: z.string(),
  created: z.number(),
  data: z.looseObject({}),
});
