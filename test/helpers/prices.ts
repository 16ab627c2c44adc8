/**
 * The Stripe price ids of the tests and the benchmark (lib/config STRIPE_PRICE_VARS → id); the
 * loopback Stripe server (test/helpers/stripe-server.ts) knows them. No test runner needed here:
 * the benchmark imports it too.
 */
export const TEST_PRICES = {
  STRIPE_PRICE_PLUS_MONTHLY: "price_plus_monthly",
  STRIPE_PRICE_PLUS_YEARLY: "price_plus_yearly",
  STRIPE_PRICE_PRO_MONTHLY: "price_pro_monthly",
  STRIPE_PRICE_PRO_YEARLY: "price_pro_yearly",
  STRIPE_PRICE_PACK_STARTER: "price_pack_starter",
  STRIPE_PRICE_PACK_PRO: "price_pack_pro",
  STRIPE_PRICE_PACK_ENTERPRISE: "price_pack_enterprise",
} as const;
