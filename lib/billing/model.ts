import type { AccountRecord, SubscriptionState } from "../ledger/account.js";
import type { ChargeMoney } from "./clawback.js";

/**
 * Billing's model: the billing attributes of the account, and the records billing keeps beside
 * it (purchases, clawback bookkeeping, parked events, webhook receipts). The port (store.ts),
 * the use cases and the DynamoDB adapter depend on it; it depends only on the ledger's model and
 * the clawback rule's money facts.
 */

/** Which checkout a pending marker guards: one subscription checkout and one pack checkout at a time. */
export type CheckoutKind = "subscription" | "pack";

/** A checkout we started and Stripe has not finished (completed or expired) yet. */
export interface PendingCheckout {
  /** drawn when the marker is claimed; names the Stripe idempotency key of the session */
  nonce: string;
  expiresAt: number;
  /** what the checkout is for (e.g. `subscription:pro:month`, `pack:starter`); a resume must match it */
  request?: string;
  sessionId?: string;
  url?: string;
}

/**
 * A live subscription of a user that is not the account's current one (a double subscription),
 * as its latest event reported it: enough to make it the current one when that one ends.
 */
export interface ExtraSubscription extends Omit<SubscriptionState, "id"> {
  /** when it was first seen alongside the current one */
  detectedAt: number;
}

/** The account item as billing sees it: the ledger's fields plus billing's own attributes. */
export type BillingAccount = AccountRecord & {
  pendingCheckout?: PendingCheckout;
  pendingPackCheckout?: PendingCheckout;
  extraSubscriptions?: Record<string, ExtraSubscription>;
  /**
   * subscription id → event time (epoch ms) of the last state seen of a subscription that ended
   * while not (or no longer) the current one: a late event of it from before then is stale, so a
   * delayed "active" of a dead subscription never comes back as a live extra.
   */
  endedSubscriptions?: Record<string, number>;
  /**
   * Revision of the subscription state (`subscription`, `extraSubscriptions`,
   * `endedSubscriptions`), bumped by every write of it: each such write is conditioned on the
   * revision its decision read, so two events deciding from the same state cannot both land.
   */
  subscriptionRev?: number;
  /** event time (epoch ms) of the latest paid invoice: a failure older than it is not recorded */
  lastPaidAt?: number;
  /**
   * The charges of the account's annual payments that have a clawback record (a refund or a
   * dispute), so the end of an annual year finds them (lib/billing/refunds.ts, settleYearEndClaws).
   */
  clawCharges?: Set<string>;
};

/**
 * What one payment bought, recorded when its credits are granted, so a later refund or dispute
 * of that payment knows whose credits, how many and from which bucket to take back. Keyed by the
 * payment intent (packs) or by the invoice (subscription allowances and upgrade top-ups).
 */
export interface PurchaseRecord {
  /** `pi_…` or `in_…` */
  id: string;
  userId: string;
  credits: number;
  bucket: "allowance" | "purchased";
  /** the ledger entry that granted them */
  grantKey: string;
  /** what was paid for them (smallest currency unit); the basis of proportional refunds */
  amountCents: number;
  createdAt: number;
  /**
   * A payment of an annual year: the share of that year's scheduled months it pays for, as
   * recorded on the account with its grant (lib/ledger/paid-year.ts). The annual invoice pays
   * months 1..11 at its plan's allowance (month 0 is its grant); an upgrade's proration invoice
   * pays the allowance difference for the months after the one its top-up covers.
   */
  share?: { anchor: number; fromMonth: number; monthly: number };
}

/**
 * Clawback bookkeeping of one charge: whose payment it is, what it bought, and everything Stripe
 * told us about its money (refunds, disputes, and their reversals: see `ChargeMoney`), kept so any
 * arrival order gives the same state. What the clawbacks hold is in the ledger, under the keys
 * listed in `claws` (versioned: every change is a compare-and-swap on `version`).
 */
export interface ClawRecord extends ChargeMoney {
  chargeId: string;
  userId: string;
  purchaseId: string;
  /** credits the payment bought (twelve monthly allowances for an annual invoice) */
  credits: number;
  /**
   * The ledger key of every fact of this charge → when it was first recorded (epoch ms). A key
   * is listed before its entry can be written, so the entries under these keys are all the
   * credits the charge's facts moved (records from before reversals hold the credits each took).
   */
  claws: Record<string, number>;
  /** records from before reversals: credits taken so far (the ledger entries are the truth) */
  clawed?: number;
  version: number;
}

/** A verified Stripe event of a handled type that could not be applied (see lib/billing/parked.ts). */
export interface ParkedEvent {
  eventId: string;
  type: string;
  /** why it was parked last: the handler's outcome without the `parked_` prefix (unknown_price, …) */
  reason: string;
  /** the event's customer (`cus_…`) when it names one: a mapping written later replays it */
  customer?: string;
  /** the verified event exactly as Stripe sent it */
  payload: string;
  status: "parked" | "resolved" | "dismissed";
  firstSeenAt: number;
  lastSeenAt: number;
  attempts: number;
  /**
   * epoch ms from which the sweep retries it (lib/billing/parked.ts, retryDueParkedEvents); absent
   * for a reason the sweep does not retry (only the missing fact arriving or an operator replays it)
   */
  nextAttemptAt?: number;
  /** resolved: what applying it did; dismissed: the operator's reason */
  outcome?: string;
  dismissReason?: string;
}

export interface WebhookReceipt {
  eventId: string;
  type: string;
  outcome: string;
  receivedAt: number;
}
