import * as z from "zod/mini";
import "../zod-locale.js";

/**
 * Every error code the API answers with, its HTTP status and its details, as zod schemas: the
 * source of the OpenAPI document's error responses (lib/openapi/). The body is always
 * `{"error": {code, message, ...details}}` (lib/http/error-response.ts); the details of each code
 * are listed here exactly (strict objects), so a detail the code adds without saying so fails the
 * tests' response check.
 */

/** Why a 409 CONFLICT was refused, when the caller can act on it. */
export const CONFLICT_REASONS = [
  "TOO_MANY_OPEN_HOLDS",
  "SUBSCRIPTION_EXISTS",
  "SUBSCRIPTION_NOT_SETTLED",
  "CHECKOUT_PENDING",
  "NO_SUBSCRIPTION",
  "SAME_PLAN",
  "PERIOD_RENEWING",
  "PAYMENT_METHOD_REQUIRED",
  "PACK_NOT_SOLD",
] as const;

function errorBody<C extends string, D extends Record<string, z.core.SomeType>>(code: C, details: D) {
  return z.strictObject({ error: z.strictObject({ code: z.literal(code), message: z.string(), ...details }) });
}

/** One documented error: its status, what it means, its body. */
export interface ErrorSpec {
  status: number;
  description: string;
  body: z.ZodMiniType;
}

export const ERRORS = {
  VALIDATION_FAILED: {
    status: 400,
    description: "The body, query or a header is invalid; `field` names the first wrong field (an unknown field by its name).",
    body: errorBody("VALIDATION_FAILED", { field: z.optional(z.string()) }),
  },
  UNKNOWN_MODEL: {
    status: 400,
    description: "The model is not in the catalog.",
    body: errorBody("UNKNOWN_MODEL", { field: z.literal("model") }),
  },
  PLAN_REQUIRED: {
    status: 403,
    description:
      "The account's plan does not include the model (`MODEL_NOT_IN_PLAN`), or allows no call reserving this much (`RESERVATION_OVER_PLAN_LIMIT`); `requiredPlan` is the cheapest plan that does, for an upgrade button.",
    body: errorBody("PLAN_REQUIRED", {
      model: z.string(),
      plan: z.string(),
      requiredPlan: z.string(),
      reason: z.enum(["MODEL_NOT_IN_PLAN", "RESERVATION_OVER_PLAN_LIMIT"]),
      reserved: z.number().check(z.int()),
    }),
  },
  UNAUTHORIZED: {
    status: 401,
    description: "Missing or invalid bearer token.",
    body: errorBody("UNAUTHORIZED", {}),
  },
  INSUFFICIENT_CREDITS: {
    status: 402,
    description: "Not enough available credits for the most this call can cost (`required`).",
    body: errorBody("INSUFFICIENT_CREDITS", {
      required: z.number().check(z.int()),
      balance: z.number().check(z.int()),
      available: z.number().check(z.int()),
    }),
  },
  PAYMENT_FAILED: {
    status: 402,
    description: "Stripe declined the payment of a plan change; update the payment method in the billing portal.",
    body: errorBody("PAYMENT_FAILED", {}),
  },
  FORBIDDEN: {
    status: 403,
    description: "The token may not call this route (a user token on the gate, a service token on a user route).",
    body: errorBody("FORBIDDEN", {}),
  },
  NOT_FOUND: {
    status: 404,
    description: "No such hold (settle, release), or no such route.",
    body: errorBody("NOT_FOUND", {}),
  },
  CONFLICT: {
    status: 409,
    description:
      "The request conflicts with the account's state (`reason`). With `retryable: true` nothing was written and the same request may be retried (with the same requestId or holdId).",
    body: errorBody("CONFLICT", {
      retryable: z.optional(z.boolean()),
      reason: z.optional(z.enum(CONFLICT_REASONS)),
      field: z.optional(z.string()),
      status: z.optional(z.string()),
      checkoutUrl: z.optional(z.string()),
      expiresAt: z.optional(z.iso.datetime()),
    }),
  },
  NO_BILLING_ACCOUNT: {
    status: 409,
    description: "The user has no Stripe customer yet: subscribe or buy a pack first.",
    body: errorBody("NO_BILLING_ACCOUNT", {}),
  },
  RATE_LIMITED: {
    status: 429,
    description: "Too many authorizations this minute; retry after `retryAfterSeconds` (also the Retry-After header).",
    body: errorBody("RATE_LIMITED", { retryAfterSeconds: z.number().check(z.int()) }),
  },
  INTERNAL: {
    status: 500,
    description: "An unexpected error; nothing about it is disclosed.",
    body: errorBody("INTERNAL", {}),
  },
  UPSTREAM_ERROR: {
    status: 502,
    description: "The payment provider or the token issuer's keys did not answer; retry.",
    body: errorBody("UPSTREAM_ERROR", {}),
  },
  STRIPE_NOT_CONFIGURED: {
    status: 503,
    description: "Stripe is not configured on this deployment; the message names what is missing.",
    body: errorBody("STRIPE_NOT_CONFIGURED", {}),
  },
  /** The webhook's transient failure: a 5xx so that Stripe retries the event (lib/billing/webhook.ts). */
  RETRY_LATER: {
    status: 503,
    description: "The event could not be applied now (code INTERNAL); Stripe retries it.",
    body: errorBody("INTERNAL", {}),
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorName = keyof typeof ERRORS;
