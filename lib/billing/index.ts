/**
 * Billing: everything that touches Stripe. Use cases (one per user action or Stripe event), a
 * small persistence port (its DynamoDB adapter, dynamo-billing-store.ts, is built only by the wiring:
 * lib/billing/runtime.ts, infra, tests), and a thin port over the real Stripe SDK.
 * Credits only ever move through the ledger's grantCredits / clawBack (lib/ledger).
 */
export {
  CHECKOUT_IN_FLIGHT_MS,
  ensureCustomer,
  startPackCheckout,
  startSubscriptionCheckout,
  type SubscriptionCheckoutInput,
} from "./checkout.js";
export { BILLING_DEFAULTS, type BillingDeps } from "./deps.js";
export { applyStripeEvent, HANDLED_EVENT_TYPES, type StripeEventEnvelope } from "./events.js";
export { cancelSubscription, changePlan, type ChangePlanResult, openPortal } from "./manage.js";
export { upgradeKey, upgradeTopUp } from "./upgrade-top-up.js";
export {
  dismissParkedEvent,
  nextParkedAttemptAt,
  PARKED_EVENT_KEEP_SECONDS,
  PARKED_RETRY_BACKOFF,
  type ParkedRetrySummary,
  type ReplayResult,
  replayParkedEvent,
  replayParkedEvents,
  retryDueParkedEvents,
} from "./parked.js";
export { createPriceBook, type PriceBook, priceBookFromConfig } from "./prices.js";
export { clawFactKey } from "./clawback.js";
export { applyWaitingClaws, clawBackPayment } from "./refunds.js";
export type { BillingAccount, ClawRecord, ParkedEvent, PendingCheckout, PurchaseRecord, WebhookReceipt } from "./model.js";
export type { BillingStore } from "./store.js";
export {
  createStripePort,
  PaymentFailedError,
  PINNED_API_VERSION,
  type StripePort,
  stripeClient,
  verifyWebhook,
  WEBHOOK_TOLERANCE_SECONDS,
} from "./stripe-port.js";
export { applySubscription, isLive, reconcilePlan } from "./subscription.js";
export { handleStripeWebhook, type WebhookDelivery, type WebhookResult } from "./webhook.js";
