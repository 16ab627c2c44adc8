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
