import { type Catalog, catalog, validateCatalog } from "../../lib/catalog.js";

/**
 * The shipped catalog with every plan's per-minute limit raised to `perMinute`: the bench measures
 * authorize's write under load (the rate counter is still part of it), not the free plan's 60 a
 * minute throttling one busy account. Models, reservations and hold caps stay as shipped.
 */
export function benchCatalog(perMinute: number): Catalog {
  const raised = structuredClone(catalog) as Catalog;
  for (const plan of Object.values(raised.plans)) plan.entitlements.authorizePerMinute = perMinute;
  return validateCatalog(raised);
}
