import * as z from "zod/mini";
import "./zod-locale.js";

/**
 * The product catalog: plans, packs and model rates in one typed, validated place. Stripe price ids
 * are not here: they come from config (lib/config), and prices are mapped to plans only through it.
 */
/**
 * Where a plan's `credits.low` webhook fires (lib/events): a share of the plan's monthly allowance,
 * or a fixed number of credits.
 */
const lowThresholdSchema = z.union([
  z.object({ percentOfAllowance: z.number().check(z.positive(), z.maximum(100)) }),
  z.object({ credits: z.number().check(z.int(), z.positive()) }),
]);

/**
 * What a plan may do (docs/entitlements.md): the model tiers it may call, and its limits, each
 * enforced inside authorize's one conditional write (lib/ledger/entitlements.ts).
 */
const entitlementsSchema = z.object({
  modelTiers: z.array(z.string()).check(z.minLength(1)),
  /** authorizes per minute (AUTHORIZE_RATE_LIMIT_PER_MINUTE caps it for every plan; 0 there turns rate limits off) */
  authorizePerMinute: z.number().check(z.int(), z.positive()),
  /** the most credits one call may reserve */
  largestReservation: z.number().check(z.int(), z.positive()),
  /** holds open at once (the ledger's maxOpenHolds, LEDGER_DEFAULTS in lib/ledger/deps.ts, caps it for every plan) */
  maxOpenHolds: z.number().check(z.int(), z.positive()),
});

const planSchema = z.object({
  rank: z.number().check(z.int(), z.minimum(0)),
  entitlements: entitlementsSchema,
  monthlyAllowance: z.number().check(z.int(), z.positive()),
  lowThreshold: lowThresholdSchema,
  allowancePolicy: z.enum(["accumulate", "reset"]),
  paid: z.boolean(),
  intervals: z.array(z.enum(["month", "year"])),
});

const catalogSchema = z.object({
  signupBonus: z.number().check(z.int(), z.positive()),
  /** Free allowance periods are this long, anchored at account creation. */
  freePeriodDays: z.number().check(z.int(), z.positive()),
  plans: z.record(z.string(), planSchema),
  packs: z.record(z.string(), z.object({ credits: z.number().check(z.int(), z.positive()) })),
  modelTiers: z.record(
    z.string(),
    z.object({ inputPer1k: z.number().check(z.positive()), outputPer1k: z.number().check(z.positive()) }),
  ),
  models: z.record(z.string(), z.string()),
});

const rawCatalog = {
  signupBonus: 10_000,
  freePeriodDays: 30,
  plans: {
    free: {
      rank: 0,
      entitlements: { modelTiers: ["small"], authorizePerMinute: 60, largestReservation: 20_000, maxOpenHolds: 64 },
      monthlyAllowance: 10_000,
      lowThreshold: { percentOfAllowance: 20 },
      allowancePolicy: "accumulate",
      paid: false,
      intervals: [],
    },
    plus: {
      rank: 1,
      entitlements: { modelTiers: ["small", "large"], authorizePerMinute: 300, largestReservation: 100_000, maxOpenHolds: 64 },
      monthlyAllowance: 40_000,
      lowThreshold: { percentOfAllowance: 10 },
      allowancePolicy: "accumulate",
      paid: true,
      intervals: ["month", "year"],
    },
    pro: {
      rank: 2,
      entitlements: { modelTiers: ["small", "large"], authorizePerMinute: 600, largestReservation: 200_000, maxOpenHolds: 64 },
      monthlyAllowance: 100_000,
      lowThreshold: { credits: 10_000 },
      allowancePolicy: "accumulate",
      paid: true,
      intervals: ["month", "year"],
    },
  },
  packs: {
    starter: { credits: 50_000 },
    pro: { credits: 200_000 },
    enterprise: { credits: 1_000_000 },
  },
  modelTiers: {
    small: { inputPer1k: 3, outputPer1k: 15 },
    large: { inputPer1k: 15, outputPer1k: 75 },
  },
  models: {
    "anthropic/claude-sonnet-4.5": "small",
    "openai/gpt-5.2": "small",
    "google/gemini-3-pro-preview": "small",
    "mistralai/mistral-large-2512": "small",
    "anthropic/claude-opus-4.5": "large",
  },
} as const;

export type Catalog = z.infer<typeof catalogSchema>;
export type PlanDefinition = z.infer<typeof planSchema>;
export type PlanEntitlements = z.infer<typeof entitlementsSchema>;
export type LowThreshold = z.infer<typeof lowThresholdSchema>;
export type PlanId = keyof typeof rawCatalog.plans;
export type PackId = keyof typeof rawCatalog.packs;
export type ModelId = keyof typeof rawCatalog.models;
export type BillingInterval = "month" | "year";

/** Validates a catalog: shape by schema, and cross-references (every model's tier exists). */
export function validateCatalog(input: unknown): Catalog {
  const catalog = catalogSchema.parse(input);
  for (const [model, tier] of Object.entries(catalog.models)) {
    if (!catalog.modelTiers[tier]) throw new Error(`Catalog: model ${model} names unknown tier ${tier}`);
  }
  if (!catalog.plans.free || catalog.plans.free.paid) throw new Error("Catalog: a free plan that is not paid is required");
  for (const [id, plan] of Object.entries(catalog.plans)) {
    // A paid plan's allowance comes from invoices, which can be paid late (after the next period's)
    // or refunded after their credits lapsed; lapsing by invoice would need per-period ordering of
    // both, so paid allowances accumulate. `reset` is for allowances the schedule grants.
    if (plan.paid && plan.allowancePolicy === "reset") {
      throw new Error(`Catalog: plan ${id} is paid; only unpaid plans may reset their allowance (paid allowances accumulate)`);
    }
  }
  for (const [id, plan] of Object.entries(catalog.plans)) {
    for (const tier of plan.entitlements.modelTiers) {
      if (!Object.hasOwn(catalog.modelTiers, tier)) throw new Error(`Catalog: plan ${id} names unknown model tier ${tier}`);
    }
  }
  // A model no plan includes could never be called, and its 403 could name no plan to upgrade to.
  for (const [model, tier] of Object.entries(catalog.models)) {
    if (!Object.values(catalog.plans).some((plan) => plan.entitlements.modelTiers.includes(tier))) {
      throw new Error(`Catalog: no plan includes model ${model} (tier ${tier})`);
    }
  }
  const ranks = Object.values(catalog.plans).map((plan) => plan.rank);
  if (new Set(ranks).size !== ranks.length) throw new Error("Catalog: plan ranks must be distinct (plans are ordered)");
  return catalog;
}

export const catalog: Catalog = validateCatalog(rawCatalog);

export const PLAN_IDS = Object.keys(rawCatalog.plans) as PlanId[];
export const PACK_IDS = Object.keys(rawCatalog.packs) as PackId[];
export const MODEL_IDS = Object.keys(rawCatalog.models) as ModelId[];

export function isPlanId(value: string): value is PlanId {
  return Object.hasOwn(catalog.plans, value);
}

export function isPackId(value: string): value is PackId {
  return Object.hasOwn(catalog.packs, value);
}

export function isModelId(value: string): value is ModelId {
  return Object.hasOwn(catalog.models, value);
}

export function planOf(plan: PlanId, from: Catalog = catalog): PlanDefinition {
  // own keys only: `toString` or `__proto__` is no plan
  const definition = Object.hasOwn(from.plans, plan) ? from.plans[plan] : undefined;
  if (!definition) throw new Error(`unknown plan ${plan}`);
  return definition;
}

/** -1 downgrade, 0 same, 1 upgrade. */
export function comparePlans(from: PlanId, to: PlanId): -1 | 0 | 1 {
  return Math.sign(planOf(to).rank - planOf(from).rank) as -1 | 0 | 1;
}
