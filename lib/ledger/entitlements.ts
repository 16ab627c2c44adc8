import type { Catalog, PlanEntitlements, PlanId } from "../catalog.js";
import { ownValue } from "../own-keys.js";

/**
 * What each plan may do, read from the catalog for one call: which plans include the call's model,
 * which allow its reservation, and each plan's rate and open-hold limits. Pure; authorize's
 * admission rules (lib/ledger/admission.ts) turn it into conditions on the account's `plan`, so the
 * plan in force when the one conditional write lands is the plan that decides (docs/entitlements.md).
 */

/** The operator's caps over every plan: the ledger's maxOpenHolds (LEDGER_DEFAULTS) and AUTHORIZE_RATE_LIMIT_PER_MINUTE (0 = rate limits off). */
export interface OperatorCaps {
  maxOpenHolds: number;
  authorizeRateLimitPerMinute: number;
}

/** A plan's limits as enforced: the catalog's, capped by the operator's. */
export interface EffectiveLimits {
  /** null: no per-minute limit (rate limits are off) */
  authorizePerMinute: number | null;
  largestReservation: number;
  maxOpenHolds: number;
}

export function effectiveLimits(entitlements: PlanEntitlements, caps: OperatorCaps): EffectiveLimits {
  return {
    authorizePerMinute: caps.authorizeRateLimitPerMinute > 0 ? Math.min(entitlements.authorizePerMinute, caps.authorizeRateLimitPerMinute) : null,
    largestReservation: entitlements.largestReservation,
    maxOpenHolds: Math.min(entitlements.maxOpenHolds, caps.maxOpenHolds),
  };
}

/** Plans sharing one value of a limit: a condition per group keeps the write's condition short. */
export interface PlanGroup {
  plans: string[];
  limit: number;
}

/**
 * The plan an account is served as: its stored plan when the catalog has it, else the free plan
 * (a plan retired from the catalog, a missing or corrupt attribute). Authorize's conditions say
 * the same (`planIsOneOf` in lib/ledger/admission.ts), so the view, the write and the 403 agree.
 */
export const FALLBACK_PLAN = "free" satisfies PlanId;

export function effectivePlan(catalog: Catalog, stored: unknown): PlanId {
  return typeof stored === "string" && Object.hasOwn(catalog.plans, stored) ? (stored as PlanId) : FALLBACK_PLAN;
}

export interface PlanAdmission {
  /** every plan of the catalog: an account whose plan is none of them is served as FALLBACK_PLAN */
  catalogPlans: string[];
  /** plans whose tiers include the model */
  includingModel: string[];
  /** plans whose largest reservation covers this call's */
  allowingReservation: string[];
  /** every plan, grouped by open-hold cap */
  holdCaps: PlanGroup[];
  /** every plan with a per-minute limit, grouped by it; undefined when rate limits are off */
  rateLimits?: PlanGroup[];
}

function modelTier(catalog: Catalog, model: string): string | undefined {
  return ownValue(catalog.models, model);
}

/** Whether `plan` includes `model` (an unknown plan or model includes nothing). */
export function planIncludesModel(catalog: Catalog, plan: string, model: string): boolean {
  const definition = ownValue(catalog.plans, plan);
  const tier = modelTier(catalog, model);
  return definition !== undefined && tier !== undefined && definition.entitlements.modelTiers.includes(tier);
}

/** Whether `plan` allows a call reserving `reserved` credits. */
export function planAllowsReservation(catalog: Catalog, plan: string, reserved: number): boolean {
  const definition = ownValue(catalog.plans, plan);
  return definition !== undefined && reserved <= definition.entitlements.largestReservation;
}

function grouped(catalog: Catalog, limitOf: (entitlements: PlanEntitlements) => number | null): PlanGroup[] {
  const groups = new Map<number, string[]>();
  for (const [plan, definition] of Object.entries(catalog.plans)) {
    const limit = limitOf(definition.entitlements);
    if (limit === null) continue;
    groups.set(limit, [...(groups.get(limit) ?? []), plan]);
  }
  return [...groups].map(([limit, plans]) => ({ plans, limit }));
}

/** What the catalog's plans say of one call (`reserved` credits of `model`). */
export function planAdmission(catalog: Catalog, model: string, reserved: number, caps: OperatorCaps): PlanAdmission {
  const plans = Object.keys(catalog.plans);
  return {
    catalogPlans: plans,
    includingModel: plans.filter((plan) => planIncludesModel(catalog, plan, model)),
    allowingReservation: plans.filter((plan) => planAllowsReservation(catalog, plan, reserved)),
    holdCaps: grouped(catalog, (entitlements) => effectiveLimits(entitlements, caps).maxOpenHolds),
    ...(caps.authorizeRateLimitPerMinute > 0 ? { rateLimits: grouped(catalog, (entitlements) => effectiveLimits(entitlements, caps).authorizePerMinute) } : {}),
  };
}

/** The cheapest plan (lowest rank) that includes `model` and allows `reserved`; undefined when none does. */
export function requiredPlanFor(catalog: Catalog, model: string, reserved: number): PlanId | undefined {
  const candidates = Object.entries(catalog.plans)
    .filter(([plan]) => planIncludesModel(catalog, plan, model) && planAllowsReservation(catalog, plan, reserved))
    .sort(([, a], [, b]) => a.rank - b.rank);
  return candidates[0]?.[0] as PlanId | undefined;
}

/** The largest reservation any plan allows: a call above it is refused before any write. */
export function largestReservationOfAnyPlan(catalog: Catalog): number {
  return Math.max(...Object.values(catalog.plans).map((plan) => plan.entitlements.largestReservation));
}

/** A plan's entitlements as the app shows them: the models it may call, those it lacks with the plan that has them, and its limits. */
export interface EntitlementsView {
  models: string[];
  lockedModels: { model: string; requiredPlan: PlanId }[];
  limits: EffectiveLimits;
}

export function entitlementsView(catalog: Catalog, stored: string, caps: OperatorCaps): EntitlementsView {
  const plan = effectivePlan(catalog, stored);
  const definition = ownValue(catalog.plans, plan);
  const models = Object.keys(catalog.models);
  return {
    models: models.filter((model) => planIncludesModel(catalog, plan, model)),
    lockedModels: models
      .filter((model) => !planIncludesModel(catalog, plan, model))
      .map((model) => ({ model, requiredPlan: requiredPlanFor(catalog, model, 0) as PlanId })),
    limits: effectiveLimits((definition ?? planOfFallback(catalog)).entitlements, caps),
  };
}

function planOfFallback(catalog: Catalog) {
  const definition = ownValue(catalog.plans, FALLBACK_PLAN);
  if (!definition) throw new Error("Catalog: no free plan"); // validateCatalog requires it
  return definition;
}
