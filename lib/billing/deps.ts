import { StripeNotConfiguredError } from "../errors.js";
import type { LedgerDeps } from "../ledger/deps.js";
import type { PriceBook } from "./prices.js";
import type { BillingStore } from "./store.js";
import type { TopUpStore } from "../topup/store.js";
import type { StripePort } from "./stripe-port.js";

/** What every billing use case needs; built once per container (lib/runtime). */
export interface BillingDeps {
  ledger: LedgerDeps;
  store: BillingStore;
  /** auto top-up's settings and state (lib/topup) */
  topUps: TopUpStore;
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

export function requireStripe(deps: BillingDeps): StripePort {
  if (!deps.stripe) throw new StripeNotConfiguredError(["STRIPE_SECRET_KEY"]);
  return deps.stripe;
}

/** The Stripe port and a configured price, or 503 naming everything that is missing. */
export function requireStripeAndPrice(
  deps: BillingDeps,
  price: string | undefined,
  priceVar: string,
): { stripe: StripePort; price: string } {
  const missing = [...(deps.stripe ? [] : ["STRIPE_SECRET_KEY"]), ...(price ? [] : [priceVar])];
  if (!deps.stripe || !price) throw new StripeNotConfiguredError(missing);
  return { stripe: deps.stripe, price };
}

/** An absolute URL under APP_URL (whatever path APP_URL itself has). */
export function appLink(deps: Pick<BillingDeps, "appUrl">, path: string): string {
  const base = deps.appUrl.endsWith("/") ? deps.appUrl : `${deps.appUrl}/`;
  return new URL(path, base).toString();
}
