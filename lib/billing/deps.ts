import type { LedgerDeps } from "../ledger/index.js";
import type { PriceBook } from "./prices.js";
import type { BillingStore } from "./store.js";
import type { StripePort } from "./stripe-port.js";

/** What every billing use case needs; built once per container (lib/runtime). */
export interface BillingDeps {
  ledger: LedgerDeps;
  store: BillingStore;
  /** undefined when STRIPE_SECRET_KEY is not set: Stripe calls answer 503 STRIPE_NOT_CONFIGURED */
  stripe: StripePort | undefined;
  prices: PriceBook;
  /** the app's base URL: every success, cancel and return URL is built from it, never from a request */
  appUrl: string;
  webhookSecret: string | undefined;
  /** how long a started checkout blocks another one (and how long Stripe keeps the session open) */
  checkoutTtlMs: number;
  /** how long webhook receipts are kept (dedupe window and audit) */
  receiptTtlSeconds: number;
}

export const BILLING_DEFAULTS = {
  /** Stripe's shortest Checkout Session lifetime is 30 minutes; one more for clock skew. */
  checkoutTtlMs: 31 * 60_000,
  /** Stripe retries a delivery for up to 3 days; keep receipts well beyond that. */
  receiptTtlSeconds: 30 * 86_400,
} as const;
