import { type BillingInterval, type Catalog, type PackId, type PlanId, isPackId, isPlanId } from "../catalog.js";
import { type Config, packPriceVar, planPriceVar } from "../config.js";

/**
 * Stripe price ids ↔ plans and packs, from configuration only. Webhooks map a price they see to
 * a plan or pack through this book, never through an amount (amounts change with coupons, taxes
 * and currencies; price ids do not).
 */
export interface PriceBook {
  /** the price id of a paid plan at an interval, or undefined when not configured */
  planPrice(plan: PlanId, interval: BillingInterval): string | undefined;
  packPrice(pack: PackId): string | undefined;
  planOfPrice(priceId: string): { plan: PlanId; interval: BillingInterval } | undefined;
  packOfPrice(priceId: string): PackId | undefined;
  /** the environment variable that holds a plan's (or pack's) price: named in 503 answers */
  planPriceVar(plan: PlanId, interval: BillingInterval): string;
  packPriceVar(pack: PackId): string;
}

export type PriceTable = Record<string, string | undefined>;

/** A price book over environment-style variables (STRIPE_PRICE_PRO_MONTHLY=price_…). */
export function createPriceBook(table: PriceTable, catalog: Catalog): PriceBook {
  const plans = new Map<string, { plan: PlanId; interval: BillingInterval }>();
  const packs = new Map<string, PackId>();
  for (const [plan, definition] of Object.entries(catalog.plans)) {
    if (!definition.paid || !isPlanId(plan)) continue;
    for (const interval of definition.intervals) {
      const price = table[planPriceVar(plan, interval)];
      if (price) plans.set(price, { plan, interval });
    }
  }
  for (const pack of Object.keys(catalog.packs)) {
    if (!isPackId(pack)) continue;
    const price = table[packPriceVar(pack)];
    if (price) packs.set(price, pack);
  }
  return {
    planPrice: (plan, interval) => {
      const definition = catalog.plans[plan];
      if (!definition?.paid || !definition.intervals.includes(interval)) return undefined;
      return table[planPriceVar(plan, interval)] || undefined;
    },
    packPrice: (pack) => (catalog.packs[pack] ? table[packPriceVar(pack)] || undefined : undefined),
    planOfPrice: (priceId) => plans.get(priceId),
    packOfPrice: (priceId) => packs.get(priceId),
    planPriceVar,
    packPriceVar,
  };
}

export function priceBookFromConfig(cfg: Config, catalog: Catalog): PriceBook {
  return createPriceBook(cfg as unknown as PriceTable, catalog);
}
