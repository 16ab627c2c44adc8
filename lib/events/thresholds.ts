import { type Catalog, catalog as defaultCatalog, type PlanId, planOf } from "../catalog.js";

/**
 * Where the balance alerts fire, as pure rules on an account's `available` (balance minus what
 * open holds reserve: what the next chat may spend).
 */

/** The cheapest call the gate can admit: a call costs at least 1 credit (lib/pricing.ts `costOfCall`). */
export const CHEAPEST_CALL = 1;

/** The plan's low threshold in credits (lib/catalog.ts `lowThreshold`); never below the cheapest call. */
export function lowThresholdOf(plan: PlanId, from: Catalog = defaultCatalog): number {
  const definition = planOf(plan, from);
  const threshold =
    "credits" in definition.lowThreshold
      ? definition.lowThreshold.credits
      : Math.ceil((definition.monthlyAllowance * definition.lowThreshold.percentOfAllowance) / 100);
  return Math.max(CHEAPEST_CALL, threshold);
}

/** ok: at or above the low threshold; low: below it; depleted: below the cheapest call. */
export type Level = "ok" | "low" | "depleted";

export function levelOf(available: number, plan: PlanId, from: Catalog = defaultCatalog): Level {
  if (available < CHEAPEST_CALL) return "depleted";
  return available < lowThresholdOf(plan, from) ? "low" : "ok";
}

export type Crossing = "credits.low" | "credits.depleted" | "credits.recovered";

/**
 * The crossings from one level to the next, in the order they happened: each threshold judged on
 * the old vs the new value (old ≥ threshold > new: below; the reverse for the low threshold:
 * recovered). Staying on one side is no crossing, so each fires once per crossing; falling from
 * ok straight to depleted crosses both thresholds. Back from depleted to just low is no event:
 * "recovered" means above the low threshold again.
 */
export function crossingsBetween(before: Level, after: Level): Crossing[] {
  const crossings: Crossing[] = [];
  if (before === "ok" && after !== "ok") crossings.push("credits.low");
  if (before !== "depleted" && after === "depleted") crossings.push("credits.depleted");
  if (before !== "ok" && after === "ok") crossings.push("credits.recovered");
  return crossings;
}
