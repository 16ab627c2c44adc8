import { STRIPE_PRICE_VARS } from "../../lib/config.js";

/**
 * Price ids for local runs when none are configured: Stripe never sees them (without keys no
 * checkout is created), but webhook events carrying them map to plans and packs exactly as real
 * price ids do, so every billing flow can be tried offline with `npm run stripe:event`.
 */
export function devPrices(env: NodeJS.ProcessEnv): Record<string, string> {
  return Object.fromEntries(STRIPE_PRICE_VARS.map((name) => [name, env[name] || `price_local_${name.slice("STRIPE_PRICE_".length).toLowerCase()}`]));
}
