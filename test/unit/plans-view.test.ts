import { describe, expect, it } from "vitest";
import { type Catalog, catalog, validateCatalog } from "../../lib/catalog.js";
import { plansView } from "../../lib/plans-view.js";

/** GET /v1/plans's view of a catalog (lib/plans-view.ts), without HTTP: ordering and caps. */
const caps = { maxOpenHolds: 64, authorizeRateLimitPerMinute: 600 };

describe("plansView", () => {
  it("orders the plans by rank, not by the order the catalog declares them in", () => {
    const shuffled = validateCatalog({
      ...structuredClone(catalog),
      plans: { pro: catalog.plans.pro, free: catalog.plans.free, plus: catalog.plans.plus },
    } as Catalog);
    expect(Object.keys(shuffled.plans)).toEqual(["pro", "free", "plus"]);
    expect(plansView({ catalog: shuffled, ...caps }).plans.map((plan) => plan.id)).toEqual(["free", "plus", "pro"]);
  });

  it("lists each plan's models by its tiers, and every pack", () => {
    const view = plansView({ catalog, ...caps });
    const large = Object.keys(catalog.models).filter((model) => catalog.models[model] === "large");
    expect(large).toEqual(["anthropic/claude-opus-4.5"]);
    expect(view.plans.find((plan) => plan.id === "free")?.models).toEqual(Object.keys(catalog.models).filter((model) => !large.includes(model)));
    expect(view.plans.find((plan) => plan.id === "plus")?.models).toEqual(Object.keys(catalog.models));
    expect(view.packs).toEqual(Object.entries(catalog.packs).map(([id, pack]) => ({ id, credits: pack.credits })));
  });

  it("caps each plan's limits by the operator's, and shows no per-minute limit when rate limits are off", () => {
    const capped = plansView({ catalog, maxOpenHolds: 5, authorizeRateLimitPerMinute: 200 });
    expect(capped.plans.map((plan) => [plan.limits.authorizePerMinute, plan.limits.maxOpenHolds])).toEqual([
      [60, 5],
      [200, 5],
      [200, 5],
    ]);
    const off = plansView({ catalog, maxOpenHolds: 64, authorizeRateLimitPerMinute: 0 });
    expect(off.plans.map((plan) => plan.limits.authorizePerMinute)).toEqual([null, null, null]);
  });

  it("does not hand out the catalog's own arrays (a caller editing the view cannot change the catalog)", () => {
    const view = plansView({ catalog, ...caps });
    view.plans[1]?.intervals.push("month");
    expect(catalog.plans.plus?.intervals).toEqual(["month", "year"]);
  });
});
