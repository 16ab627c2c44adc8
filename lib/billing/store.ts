import type { SubscriptionState } from "../ledger/account.js";
import type { ClawFact } from "./clawback.js";
import type { CheckoutKind, ClawRecord, ExtraSubscription, ParkedEvent, PendingCheckout, PurchaseRecord, WebhookReceipt } from "./model.js";

/**
 * What else changes in the same conditional write as the account's subscription when one
 * subscription takes another's place: the one replaced is remembered as ended, and the one taking
 * its place (`fromExtra`, its id) stops being an extra.
 */
export interface SubscriptionSwap {
  ended?: { id: string; lastEventAt: number };
  fromExtra?: string;
}

/** Billing's persistence port: customer mapping, billing attributes of the account, receipts. */
export interface BillingStore {
  getCustomerUser(customerId: string): Promise<string | undefined>;
  /** Maps a Stripe customer to its user; a no-op when already mapped to the same user. */
  putCustomerUser(customerId: string, userId: string, now: number): Promise<void>;
  /** Sets the account's customer unless one is set; returns the customer id the account has. */
  linkAccountCustomer(userId: string, customerId: string): Promise<string>;

  /** Claims the pending-checkout marker unless a live one exists (returned instead). */
  claimCheckout(
    userId: string,
    kind: CheckoutKind,
    marker: PendingCheckout,
    now: number,
  ): Promise<{ claimed: true } | { claimed: false; existing: PendingCheckout | undefined }>;
  recordCheckoutSession(userId: string, kind: CheckoutKind, nonce: string, session: { id: string; url: string }): Promise<void>;
  /** Removes the marker if it is still the one identified (by nonce or by session id). */
  releaseCheckout(userId: string, kind: CheckoutKind, match: { nonce: string } | { sessionId: string }): Promise<void>;

  /*
   * The three writes of the subscription state below each take `rev`, the `subscriptionRev` the
   * caller's decision read (0 when absent): a write lands only if no other write of that state
   * landed since, and bumps it; false means the caller re-reads and decides again.
   */
  /** Makes `next` the account's subscription. */
  replaceSubscription(userId: string, next: SubscriptionState, rev: number, options?: SubscriptionSwap): Promise<boolean>;
  /** Records (or updates) another subscription of the user than the current one. */
  putExtraSubscription(userId: string, subscriptionId: string, extra: ExtraSubscription, rev: number): Promise<boolean>;
  /** Records that a subscription other than the current one ended for good at `at`, and forgets it as an extra. */
  endOtherSubscription(userId: string, subscriptionId: string, at: number, rev: number, wasExtra: boolean): Promise<boolean>;

  /** Records a failed payment at `at` unless a later failure, or a payment at or after `at`, is recorded. */
  markPaymentFailed(userId: string, at: number): Promise<void>;
  /** Records a payment at `paidAt` and clears a failed-payment mark that is not later (any arrival order). */
  clearPaymentFailed(userId: string, paidAt: number): Promise<void>;

  /** Adds a charge to the account's `clawCharges` (idempotent). */
  linkClawCharge(userId: string, chargeId: string): Promise<void>;
  putPurchase(purchase: PurchaseRecord): Promise<void>;
  getPurchase(id: string): Promise<PurchaseRecord | undefined>;
  getClaw(chargeId: string): Promise<ClawRecord | undefined>;
  /** Writes the record if its stored version is still `expectedVersion` (0: not stored yet). */
  putClaw(claw: ClawRecord, expectedVersion: number): Promise<boolean>;
  /**
   * Parks a refund or dispute whose purchase is not recorded (yet) under each id the purchase may
   * be recorded as (`pi_…`, `in_…`); idempotent. Removed by TTL.
   */
  putWaitingClaw(purchaseIds: string[], fact: ClawFact, now: number, ttlSeconds: number): Promise<void>;
  /** The refunds and disputes parked for a purchase id. */
  waitingClaws(purchaseId: string): Promise<ClawFact[]>;

  /**
   * Records (or records again: attempts + 1, last seen, reason, next attempt) an event that could
   * not be applied. Without `nextAttemptAt` the record has none (the sweep does not retry it).
   */
  parkEvent(event: Omit<ParkedEvent, "status" | "firstSeenAt" | "lastSeenAt" | "attempts">, now: number): Promise<void>;
  getParkedEvent(eventId: string): Promise<ParkedEvent | undefined>;
  /** Every parked, resolved or dismissed event (operators; few by design). */
  listParkedEvents(): Promise<ParkedEvent[]>;
  /** Up to `limit` events still parked whose `nextAttemptAt` is at or before `now`, the longest due first. */
  dueParkedEvents(now: number, limit: number): Promise<ParkedEvent[]>;
  /** Ends a parked event: resolved (with what applying it did) or dismissed (with why); kept for `keepSeconds`. */
  closeParkedEvent(
    eventId: string,
    end: { status: "resolved"; outcome: string } | { status: "dismissed"; dismissReason: string },
    now: number,
    keepSeconds: number,
  ): Promise<void>;

  getReceipt(eventId: string): Promise<WebhookReceipt | undefined>;
  putReceipt(receipt: WebhookReceipt, ttlSeconds: number): Promise<void>;
}
