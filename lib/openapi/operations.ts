import type * as z from "zod/mini";
import { autoTopUpBody, changePlanBody, emptyBody, packCheckoutBody, stripeEventEnvelope, subscribeBody } from "../billing/schemas.js";
import type { ErrorName } from "../http/error-schemas.js";
import {
  authorizeResponse,
  autoTopUpResponse,
  balanceResponse,
  cancelResponse,
  changePlanResponse,
  checkoutResponse,
  historyResponse,
  holdOutcomeResponse,
  openApiDocumentResponse,
  plansResponse,
  portalResponse,
  webhookResponse,
} from "../http/responses.js";
import { authorizeBody, historyQuery, noQuery, releaseBody, settleBody } from "../http/schemas.js";
import { PLANS_CACHE_CONTROL } from "../plans-view.js";

/** Who may call an operation: a user JWT, a service JWT with scope `gate`, Stripe's signature, or anyone. */
export type Caller = "user" | "service" | "stripe" | "public";

/** One route as the document describes it; every schema is the one the code validates or answers with. */
export interface Operation {
  operationId: string;
  summary: string;
  description?: string;
  tag: "gate" | "credits" | "billing" | "stripe" | "meta";
  caller: Caller;
  /** the body schema the handler parses; `required: false` when no body is accepted as well */
  body?: { schema: z.ZodMiniType; required: boolean };
  /** the query schema the handler parses (a strict object: each property is one parameter) */
  query?: z.ZodMiniType;
  response: z.ZodMiniType;
  /** what the 200 may be cached for; everything else is `no-store` */
  cacheControl?: string;
  /** the errors this route answers with, besides the ones every caller of its kind may get */
  errors: ErrorName[];
}

/** The Cache-Control of the document itself: public, it changes only with a deployment. */
export const OPENAPI_CACHE_CONTROL = "public, max-age=300";
export const OPENAPI_ROUTE = "GET /v1/openapi.json";
/** The plans for pricing pages: public like the document, served by the same function (functions/credits.ts). */
export const PLANS_ROUTE = "GET /v1/plans";

/**
 * Errors any caller of a kind may get: bad input, bad token, wrong token kind, an outage, and the
 * 404 every function answers for a route it does not serve (lib/http/router.ts, checked first).
 */
export const CALLER_ERRORS: Record<Caller, ErrorName[]> = {
  user: ["VALIDATION_FAILED", "UNAUTHORIZED", "FORBIDDEN", "NOT_FOUND", "INTERNAL", "UPSTREAM_ERROR"],
  service: ["VALIDATION_FAILED", "UNAUTHORIZED", "FORBIDDEN", "NOT_FOUND", "INTERNAL", "UPSTREAM_ERROR"],
  stripe: ["VALIDATION_FAILED", "NOT_FOUND", "INTERNAL"],
  public: ["VALIDATION_FAILED", "NOT_FOUND", "INTERNAL"],
};

/** The billing routes that change what a user pays: Stripe may be missing, slow or busy. */
const BILLING_WRITE_ERRORS: ErrorName[] = ["CONFLICT", "STRIPE_NOT_CONFIGURED"];

/** Every route of lib/routes.ts, keyed by its route key (a test keeps the two tables equal). */
export const OPERATIONS: Record<string, Operation> = {
  "POST /v1/gate/authorize": {
    operationId: "authorize",
    summary: "Reserve the most a chat call can cost, before calling the model",
    description:
      "Idempotent by `requestId`: the same request again answers with the same hold, so retry with the same requestId on a network error, a 5xx or a 409 with `retryable: true`.",
    tag: "gate",
    caller: "service",
    body: { schema: authorizeBody, required: true },
    response: authorizeResponse,
    errors: ["UNKNOWN_MODEL", "PLAN_REQUIRED", "INSUFFICIENT_CREDITS", "CONFLICT", "RATE_LIMITED"],
  },
  "POST /v1/gate/settle": {
    operationId: "settle",
    summary: "Charge a hold for the tokens the call used and release the rest",
    description: "Idempotent by `holdId`: it answers the hold's first outcome forever after, so retry until it answers.",
    tag: "gate",
    caller: "service",
    body: { schema: settleBody, required: true },
    response: holdOutcomeResponse,
    errors: ["NOT_FOUND", "CONFLICT"],
  },
  "POST /v1/gate/release": {
    operationId: "release",
    summary: "Release a hold without charging (the call failed)",
    description: "Idempotent by `holdId`: it answers the hold's first outcome forever after.",
    tag: "gate",
    caller: "service",
    body: { schema: releaseBody, required: true },
    response: holdOutcomeResponse,
    errors: ["NOT_FOUND", "CONFLICT"],
  },
  "GET /v1/credits": {
    operationId: "getCredits",
    summary: "The signed-in user's balances, plan and subscription, and what the plan includes",
    description:
      "`entitlements`: the models the plan may call, the models it lacks each with the cheapest plan that has it (authorize answers 403 PLAN_REQUIRED for them), and the plan's limits after the operator's caps (`authorizePerMinute` null when rate limits are off).",
    tag: "credits",
    caller: "user",
    response: balanceResponse,
    errors: [],
  },
  "GET /v1/credits/history": {
    operationId: "getCreditHistory",
    summary: "The user's ledger entries, newest first, in pages",
    tag: "credits",
    caller: "user",
    query: historyQuery,
    response: historyResponse,
    errors: [],
  },
  "POST /v1/billing/subscribe": {
    operationId: "subscribe",
    summary: "Start a Stripe Checkout for a paid plan (empty body: pro, monthly)",
    tag: "billing",
    caller: "user",
    body: { schema: subscribeBody, required: false },
    response: checkoutResponse,
    errors: BILLING_WRITE_ERRORS,
  },
  "POST /v1/billing/checkout": {
    operationId: "checkout",
    summary: "Start a Stripe Checkout for a credit pack",
    tag: "billing",
    caller: "user",
    body: { schema: packCheckoutBody, required: true },
    response: checkoutResponse,
    errors: BILLING_WRITE_ERRORS,
  },
  "POST /v1/billing/portal": {
    operationId: "portal",
    summary: "Open the Stripe billing portal",
    tag: "billing",
    caller: "user",
    body: { schema: emptyBody, required: false },
    response: portalResponse,
    errors: ["NO_BILLING_ACCOUNT", "STRIPE_NOT_CONFIGURED"],
  },
  "GET /v1/billing/auto-topup": {
    operationId: "getAutoTopUp",
    summary: "Auto top-up's settings, and where the user's top-ups stand",
    tag: "billing",
    caller: "user",
    response: autoTopUpResponse,
    errors: [],
  },
  "PUT /v1/billing/auto-topup": {
    operationId: "putAutoTopUp",
    summary: "Turn auto top-up on or off: buy `pack` with the saved card whenever available credits fall below `threshold`, at most `monthlyLimit` times a month",
    description:
      "Turning it on needs a saved card (409 PAYMENT_METHOD_REQUIRED: buy a pack, or POST /v1/billing/payment-method) and the pack's price configured (409 PACK_NOT_SOLD). Turning it on again clears the failures that turned it off.",
    tag: "billing",
    caller: "user",
    body: { schema: autoTopUpBody, required: true },
    response: autoTopUpResponse,
    errors: BILLING_WRITE_ERRORS,
  },
  "POST /v1/billing/payment-method": {
    operationId: "paymentMethod",
    summary: "Start a Stripe Checkout in setup mode that saves a card for auto top-up, buying nothing",
    tag: "billing",
    caller: "user",
    body: { schema: emptyBody, required: false },
    response: checkoutResponse,
    errors: ["STRIPE_NOT_CONFIGURED"],
  },
  "POST /v1/billing/change-plan": {
    operationId: "changePlan",
    summary: "Upgrade (now, prorated, with a credit top-up) or downgrade (at renewal) the subscription",
    tag: "billing",
    caller: "user",
    body: { schema: changePlanBody, required: true },
    response: changePlanResponse,
    errors: [...BILLING_WRITE_ERRORS, "PAYMENT_FAILED"],
  },
  "POST /v1/billing/cancel": {
    operationId: "cancel",
    summary: "Cancel the subscription at the end of the paid period",
    tag: "billing",
    caller: "user",
    body: { schema: emptyBody, required: false },
    response: cancelResponse,
    errors: BILLING_WRITE_ERRORS,
  },
  "POST /v1/stripe/webhook": {
    operationId: "stripeWebhook",
    summary: "Stripe's events, verified by the Stripe-Signature header over the exact raw body",
    description:
      "Called by Stripe, not by clients. An event that cannot be applied now is parked (200), or answered 503 (or 502 when Stripe's own API failed while applying it) so that Stripe retries it.",
    tag: "stripe",
    caller: "stripe",
    body: { schema: stripeEventEnvelope, required: true },
    response: webhookResponse,
    errors: ["STRIPE_NOT_CONFIGURED", "RETRY_LATER", "UPSTREAM_ERROR"],
  },
  [PLANS_ROUTE]: {
    operationId: "getPlans",
    summary: "The plans (in rank order) and credit packs, for a pricing page",
    description:
      "Public, no token. Each plan's billing intervals, monthly allowance, the models it may call and its limits as authorize enforces them (the catalog's, capped by the operator's; `authorizePerMinute` is null when rate limits are off). No prices: amounts live in Stripe (one Stripe price per plan interval and pack), so a pricing page takes them from there. A signed-in user's own plan is in GET /v1/credits `entitlements`.",
    tag: "meta",
    caller: "public",
    query: noQuery,
    response: plansResponse,
    cacheControl: PLANS_CACHE_CONTROL,
    errors: [],
  },
  [OPENAPI_ROUTE]: {
    operationId: "getOpenApiDocument",
    summary: "This document",
    tag: "meta",
    caller: "public",
    response: openApiDocumentResponse,
    cacheControl: OPENAPI_CACHE_CONTROL,
    errors: [],
  },
};
