import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Catalog, catalog, validateCatalog } from "../../lib/catalog.js";
import type { AccountRecord } from "../../lib/ledger/account.js";
import { admissionRules, refusedRules } from "../../lib/ledger/admission.js";
import {
  effectiveLimits,
  effectivePlan,
  entitlementsView,
  planAdmission,
  planAllowsReservation,
  planIncludesModel,
  requiredPlanFor,
} from "../../lib/ledger/entitlements.js";
import { newAccount } from "../../lib/ledger/ensure-account.js";

const OPUS = "anthropic/claude-opus-4.5";
const SONNET = "anthropic/claude-sonnet-4.5";
const CAPS = { maxOpenHolds: 64, authorizeRateLimitPerMinute: 600 };

describe("the shipped catalog's entitlements", () => {
  it("free: small tier only; plus and pro: every model; pro the highest rate", () => {
    for (const model of Object.keys(catalog.models)) {
      expect(planIncludesModel(catalog, "free", model)).toBe(catalog.models[model] === "small");
      expect(planIncludesModel(catalog, "plus", model)).toBe(true);
      expect(planIncludesModel(catalog, "pro", model)).toBe(true);
    }
    const rate = (plan: string) => catalog.plans[plan]?.entitlements.authorizePerMinute ?? 0;
    expect(rate("pro")).toBeGreaterThan(rate("plus"));
    expect(rate("plus")).toBeGreaterThan(rate("free"));
  });

  it("names the cheapest plan that includes a model and allows the reservation", () => {
    expect(requiredPlanFor(catalog, OPUS, 1)).toBe("plus");
    expect(requiredPlanFor(catalog, SONNET, 1)).toBe("free");
    expect(requiredPlanFor(catalog, SONNET, 20_000)).toBe("free");
    expect(requiredPlanFor(catalog, SONNET, 20_001)).toBe("plus");
    expect(requiredPlanFor(catalog, OPUS, 100_001)).toBe("pro");
    expect(requiredPlanFor(catalog, OPUS, 200_001)).toBeUndefined();
  });

  it("a plan's limits are capped by the operator's, and rate limits are off at 0", () => {
    const pro = catalog.plans.pro?.entitlements;
    if (!pro) throw new Error("no pro plan");
    expect(effectiveLimits(pro, { maxOpenHolds: 8, authorizeRateLimitPerMinute: 100 })).toEqual({
      authorizePerMinute: 100,
      largestReservation: pro.largestReservation,
      maxOpenHolds: 8,
    });
    expect(effectiveLimits(pro, { maxOpenHolds: 1_000, authorizeRateLimitPerMinute: 0 }).authorizePerMinute).toBeNull();
    expect(planAdmission(catalog, SONNET, 1, { maxOpenHolds: 64, authorizeRateLimitPerMinute: 0 }).rateLimits).toBeUndefined();
  });

  it("the view of a free plan: what it may call, what it lacks and who has it", () => {
    const view = entitlementsView(catalog, "free", CAPS);
    expect(view.models).not.toContain(OPUS);
    expect(view.models).toContain(SONNET);
    expect(view.lockedModels).toEqual([{ model: OPUS, requiredPlan: "plus" }]);
    expect(view.limits).toEqual({ authorizePerMinute: 60, largestReservation: 20_000, maxOpenHolds: 64 });
  });

  it("unknown, prototype and lookalike names include nothing", () => {
    for (const plan of ["__proto__", "constructor", "toString", "Pro", "pro ", "hasOwnProperty"]) {
      expect(planIncludesModel(catalog, plan, SONNET)).toBe(false);
      expect(planAllowsReservation(catalog, plan, 1)).toBe(false);
    }
    for (const model of ["__proto__", "constructor", "anthropic/claude-opus-4.5 ", "ANTHROPIC/claude-opus-4.5"]) {
      expect(planIncludesModel(catalog, "pro", model)).toBe(false);
    }
  });
});

describe("catalog validation of entitlements", () => {
  it("refuses an unknown tier, a model no plan includes, and an empty tier list", () => {
    const unknownTier = structuredClone(catalog) as Catalog;
    (unknownTier.plans.plus as { entitlements: { modelTiers: string[] } }).entitlements.modelTiers = ["small", "huge"];
    expect(() => validateCatalog(unknownTier)).toThrow(/unknown model tier huge/);
    const orphan = structuredClone(catalog) as Catalog;
    for (const plan of Object.values(orphan.plans)) plan.entitlements.modelTiers = ["small"];
    expect(() => validateCatalog(orphan)).toThrow(/no plan includes model anthropic\/claude-opus-4.5/);
    const empty = structuredClone(catalog) as Catalog;
    (empty.plans.free as { entitlements: { modelTiers: string[] } }).entitlements.modelTiers = [];
    expect(() => validateCatalog(empty)).toThrow();
    const noRate = structuredClone(catalog) as Catalog;
    (noRate.plans.pro as { entitlements: { authorizePerMinute: number } }).entitlements.authorizePerMinute = 0;
    expect(() => validateCatalog(noRate)).toThrow();
  });
});

/** Random catalogs: three plans with random tiers and limits over the shipped models. */
const tiersArbitrary = fc.subarray(["small", "large"], { minLength: 1 });
const entitlementsArbitrary = fc.record({
  modelTiers: tiersArbitrary,
  authorizePerMinute: fc.integer({ min: 1, max: 8 }),
  largestReservation: fc.integer({ min: 1, max: 300 }),
  maxOpenHolds: fc.integer({ min: 1, max: 6 }),
});
const randomCatalogArbitrary = fc
  .tuple(entitlementsArbitrary, entitlementsArbitrary, entitlementsArbitrary)
  .map(([free, plus, pro]) => {
    const random = structuredClone(catalog) as Catalog;
    (random.plans.free as { entitlements: unknown }).entitlements = free;
    (random.plans.plus as { entitlements: unknown }).entitlements = plus;
    (random.plans.pro as { entitlements: unknown }).entitlements = { ...pro, modelTiers: ["small", "large"] }; // every model on some plan
    return validateCatalog(random);
  });

describe("the admission rules enforce exactly the plan's entitlements (fast-check, random plans × models × limits)", () => {
  it("an account is refused for its plan iff its plan lacks the model, the reservation, the rate or the hold room", () => {
    fc.assert(
      fc.property(
        randomCatalogArbitrary,
        fc.constantFrom("free", "plus", "pro", "__proto__", "Pro"),
        fc.constantFrom(...Object.keys(catalog.models)),
        fc.integer({ min: 1, max: 320 }),
        fc.integer({ min: 0, max: 9 }),
        fc.integer({ min: 0, max: 7 }),
        fc.record({ maxOpenHolds: fc.integer({ min: 1, max: 8 }), authorizeRateLimitPerMinute: fc.integer({ min: 0, max: 9 }) }),
        (random, plan, model, reserved, counter, openHolds, caps) => {
          const NOW = 60_000 * 100;
          const base = newAccount({ catalog: random }, "u", 0).account;
          const holds = Object.create(null) as AccountRecord["holds"];
          for (let i = 0; i < openHolds; i++) holds[`h${i}`] = { reserved: 1, model, createdAt: 0, expiresAt: NOW * 2, tag: "t" };
          const rateCounters = Object.create(null) as Record<string, number>;
          rateCounters["100"] = counter;
          const account: AccountRecord = { ...base, plan: plan as AccountRecord["plan"], balance: 1e9, available: 1e9, holds, rateCounters, nextGrantAt: undefined };
          const refused = refusedRules(admissionRules({ requestId: "new", reserved, now: NOW, minute: 100, plans: planAdmission(random, model, reserved, caps) }), account);
          // a plan the catalog does not have is served as the free plan
          const definition = random.plans[effectivePlan(random, plan)];
          const limits = definition && effectiveLimits(definition.entitlements, caps);
          const expected: string[] = [];
          if (!definition?.entitlements.modelTiers.includes(random.models[model] as string)) expected.push("planIncludesModel");
          if (!definition || reserved > definition.entitlements.largestReservation) expected.push("planAllowsReservation");
          if (caps.authorizeRateLimitPerMinute > 0 && (!limits || counter >= (limits.authorizePerMinute as number))) expected.push("underRateLimit");
          if (!limits || openHolds >= limits.maxOpenHolds) expected.push("underHoldCap");
          expect(refused).toEqual(expected);
          // and the plan the rules ask for, when there is one, admits the call on its own terms
          const required = requiredPlanFor(random, model, reserved);
          if (required !== undefined) {
            expect(planIncludesModel(random, required, model) && planAllowsReservation(random, required, reserved)).toBe(true);
            for (const [other, terms] of Object.entries(random.plans)) {
              if (terms.rank < (random.plans[required]?.rank ?? 0)) {
                expect(planIncludesModel(random, other, model) && planAllowsReservation(random, other, reserved)).toBe(false);
              }
            }
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
