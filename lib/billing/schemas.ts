import { z } from "zod";
import { PACK_IDS, PLAN_IDS } from "../catalog.js";

/** Request bodies of the billing routes. Strict: an unknown field is a 400 naming it. */
const paidPlan = z.enum(PLAN_IDS).refine((plan) => plan !== "free", "the free plan needs no subscription");

/** `{plan?, interval?}`; an empty body means pro, monthly. */
export const subscribeBody = z
  .strictObject({ plan: paidPlan.optional(), interval: z.enum(["month", "year"]).optional() })
  .optional()
  .transform((body) => body ?? {});

export const packCheckoutBody = z.strictObject({ pack: z.enum(PACK_IDS) });

export const changePlanBody = z.strictObject({ plan: z.enum(PLAN_IDS) });

/** portal and cancel take no input: no body, or an empty object. */
export const emptyBody = z.strictObject({}).optional();
