import * as z from "zod/mini";
import "../zod-locale.js";
import { PACK_IDS, PLAN_IDS } from "../catalog.js";

/**
 * Every success body the API answers with, as zod schemas: the source of the OpenAPI document's
 * response schemas (lib/openapi/). The functions annotate each route's result with the type these
 * infer (functions/*.ts), so the compiler refuses a result that lacks or mistypes a documented
 * field; the tests check every response they receive against the document (test/helpers/openapi.ts),
 * which refuses a field the document does not name (the objects are strict in the document).
 */

const credits = z.number().check(z.int());
const isoTime = z.iso.datetime();
const plan = z.enum(PLAN_IDS);

export const authorizeResponse = z.object({
  /** opaque; pass it to settle or release */
  holdId: z.string(),
  reserved: credits,
  balance: credits,
  available: credits,
  plan,
});

export const holdOutcomeResponse = z.object({
  holdId: z.string(),
  status: z.enum(["settled", "released", "expired"]),
  charged: credits,
  released: credits,
  balance: credits,
});

/** A plan's limits as authorize enforces them: the catalog's, capped by the operator's (lib/ledger/entitlements.ts `effectiveLimits`). */
export const planLimitsResponse = z.object({
  /** authorizes per minute; null when the operator turned rate limits off (AUTHORIZE_RATE_LIMIT_PER_MINUTE=0) */
  authorizePerMinute: z.nullable(z.number().check(z.int())),
  /** the most credits one authorize may reserve */
  largestReservation: credits,
  /** holds open at once */
  maxOpenHolds: z.number().check(z.int()),
});

/** What the account's plan includes (lib/ledger/entitlements.ts `entitlementsView`): the app greys out `lockedModels`. */
export const entitlementsResponse = z.object({
  /** the models the plan may call */
  models: z.array(z.string()),
  /** the models it may not, each with the cheapest plan that may (authorize answers 403 PLAN_REQUIRED for them) */
  lockedModels: z.array(z.object({ model: z.string(), requiredPlan: plan })),
  limits: planLimitsResponse,
});

export const balanceResponse = z.object({
  userId: z.string(),
  plan,
  interval: z.enum(["month", "year"]),
  balance: credits,
  available: credits,
  held: credits,
  allowance: credits,
  purchased: credits,
  monthlyAllowance: credits,
  nextGrantAt: z.nullable(isoTime),
  subscription: z.nullable(
    z.object({
      id: z.string(),
      status: z.string(),
      priceId: z.string(),
      cancelAtPeriodEnd: z.boolean(),
      periodStart: isoTime,
      periodEnd: isoTime,
    }),
  ),
  paymentFailedAt: z.nullable(isoTime),
  entitlements: entitlementsResponse,
});

export const historyEntryResponse = z.object({
  /** the entry's idempotency key, derived from the business fact */
  key: z.string(),
  amount: credits,
  balanceAfter: credits,
  /** signup, allowance, invoice, pack, upgrade, admin, settle, refund, dispute, reinstate, expire */
  reason: z.string(),
  createdAt: isoTime,
  refs: z.record(z.string(), z.union([z.string(), z.number()])),
});

export const historyResponse = z.object({
  entries: z.array(historyEntryResponse),
  /** pass it back as `cursor` for the next (older) page; null on the last page */
  nextCursor: z.nullable(z.string()),
});

export const checkoutResponse = z.object({ checkoutUrl: z.string() });

export const portalResponse = z.object({ portalUrl: z.string() });

/** Auto top-up's settings and where the user's top-ups stand (lib/topup/settings.ts `viewOf`). */
export const autoTopUpResponse = z.object({
  enabled: z.boolean(),
  threshold: z.nullable(credits),
  pack: z.nullable(z.string()),
  monthlyLimit: z.nullable(z.number().check(z.int())),
  /** top-ups started this calendar month (UTC); declined ones do not count */
  startedThisMonth: z.number().check(z.int()),
  failuresInARow: z.number().check(z.int()),
  /** this many failures in a row turn auto top-up off until the user turns it on again */
  failureLimit: z.number().check(z.int()),
  /** why it is off when the user did not turn it off */
  disabledReason: z.nullable(z.enum(["failures"])),
  /** a top-up is being charged now */
  inFlight: z.boolean(),
  lastAttempt: z.nullable(
    z.object({
      at: isoTime,
      outcome: z.enum(["succeeded", "pending", "action_required", "declined", "no_payment_method"]),
      pack: z.string(),
      invoiceId: z.nullable(z.string()),
      /** action_required: the invoice page where the customer confirms the payment */
      actionUrl: z.nullable(z.string()),
    }),
  ),
});

export const changePlanResponse = z.object({
  status: z.enum(["upgraded", "downgraded"]),
  plan,
  creditsAdded: credits,
});

export const cancelResponse = z.object({
  status: z.enum(["scheduled_cancel", "already_free"]),
  effectiveAt: z.nullable(isoTime),
  message: z.optional(z.string()),
});

export const webhookResponse = z.object({
  received: z.literal(true),
  eventId: z.string(),
  type: z.string(),
  /** what applying it did, or `duplicate` for an event applied before */
  outcome: z.string(),
});

/**
 * The catalog's public view (lib/plans-view.ts), for pricing pages: each plan in rank order with
 * what it includes, and the credit packs. Prices are not here: they live in Stripe (the Stripe
 * price of each plan and pack), so the page shows Stripe's amounts.
 */
export const plansResponse = z.object({
  plans: z.array(
    z.object({
      id: plan,
      /** plans are ordered by rank: a higher rank is an upgrade */
      rank: z.number().check(z.int()),
      paid: z.boolean(),
      /** the billing intervals sold (empty for the free plan) */
      intervals: z.array(z.enum(["month", "year"])),
      monthlyAllowance: credits,
      /** the models the plan may call */
      models: z.array(z.string()),
      limits: planLimitsResponse,
    }),
  ),
  /** the credit packs sold (POST /v1/billing/checkout) */
  packs: z.array(z.object({ id: z.enum(PACK_IDS), credits })),
});

/** The document itself: an OpenAPI 3.1 object (its own schema is the OpenAPI specification's). */
export const openApiDocumentResponse = z.looseObject({ openapi: z.string() });

export type AuthorizeResponse = z.infer<typeof authorizeResponse>;
export type HoldOutcomeResponse = z.infer<typeof holdOutcomeResponse>;
export type BalanceResponse = z.infer<typeof balanceResponse>;
export type HistoryResponse = z.infer<typeof historyResponse>;
export type CheckoutResponse = z.infer<typeof checkoutResponse>;
export type PortalResponse = z.infer<typeof portalResponse>;
export type AutoTopUpResponse = z.infer<typeof autoTopUpResponse>;
export type ChangePlanResponse = z.infer<typeof changePlanResponse>;
export type CancelResponse = z.infer<typeof cancelResponse>;
export type WebhookResponse = z.infer<typeof webhookResponse>;
export type PlansResponse = z.infer<typeof plansResponse>;
