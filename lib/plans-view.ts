import type { PackId, PlanId } from "./catalog.js";
import { parseQuery } from "./http/input.js";
import { type HttpEvent, type HttpResult, json } from "./http/response.js";
import type { PlansResponse } from "./http/responses.js";
import { noQuery } from "./http/schemas.js";
import type { LedgerDeps } from "./ledger/deps.js";
import { effectiveLimits, planIncludesModel } from "./ledger/entitlements.js";

/**
 * GET /v1/plans: the catalog's public view for pricing pages (docs/entitlements.md). Each plan in
 * rank order with the intervals it is sold in, its monthly allowance, the models it may call and
 * its limits as authorize enforces them (the catalog's, capped by the operator's); the credit
 * packs. No amounts: prices live in Stripe, one Stripe price per plan interval and pack.
 */

/** Answered the same to everyone until the next deployment or configuration change: cacheable. */
export const PLANS_CACHE_CONTROL = "public, max-age=300";

export function plansView(deps: Pick<LedgerDeps, "catalog" | "maxOpenHolds" | "authorizeRateLimitPerMinute">): PlansResponse {
  const { catalog } = deps;
  const models = Object.keys(catalog.models);
  return {
    plans: Object.entries(catalog.plans)
      .sort(([, a], [, b]) => a.rank - b.rank)
      .map(([id, plan]) => ({
        id: id as PlanId,
        rank: plan.rank,
        paid: plan.paid,
        intervals: [...plan.intervals],
        monthlyAllowance: plan.monthlyAllowance,
        models: models.filter((model) => planIncludesModel(catalog, id, model)),
        limits: effectiveLimits(plan.entitlements, deps),
      })),
    packs: Object.entries(catalog.packs).map(([id, pack]) => ({ id: id as PackId, credits: pack.credits })),
  };
}

/** The route's answer: no token needed (functions/credits.ts answers it before asking for one); no query. */
export function plansResponse(event: HttpEvent, deps: LedgerDeps): HttpResult {
  parseQuery(noQuery, event);
  return json(plansView(deps), 200, { "Cache-Control": PLANS_CACHE_CONTROL });
}
