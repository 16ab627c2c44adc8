import type { PackId } from "../catalog.js";

/**
 * Auto top-up: when a user's available credits fall below their threshold, creditgate charges
 * their saved card off-session for a credit pack, through a one-off Stripe invoice; the credits
 * come only from that invoice's `invoice.paid` (docs/auto-top-up.md). One item per user holds the
 * settings the user chose and the state of their top-ups.
 */

/** What the user chooses (PUT /v1/billing/auto-topup). */
export interface AutoTopUpSettings {
  enabled: boolean;
  /** credits: a top-up starts when `available` falls below this */
  threshold: number;
  /** the pack each top-up buys (the catalog's; its Stripe price from configuration) */
  pack: PackId;
  /** at most this many top-ups per calendar month (UTC) */
  monthlyLimit: number;
}

/** How an attempt ended. */
export type TopUpOutcome =
  /** the invoice was paid; its credits come from `invoice.paid` */
  | "succeeded"
  /** Stripe took the payment but has not finished it (a bank still processing): `invoice.paid` ends it */
  | "pending"
  /** the card needs the customer (3-D Secure): the invoice stays open at `actionUrl` */
  | "action_required"
  /** the card was declined */
  | "declined"
  /** the customer has no saved card to charge */
  | "no_payment_method";

export interface TopUpAttempt {
  /** the top-up's sequence number (its Stripe idempotency keys are made from it) */
  seq: number;
  at: number;
  outcome: TopUpOutcome;
  invoiceId?: string;
  /** the hosted invoice page where the customer confirms the payment (action_required) */
  actionUrl?: string;
  pack: PackId;
}

/** A top-up under way: what its Stripe calls send, fixed when it began, so a retry sends the same. */
export interface TopUpInFlight {
  seq: number;
  /** the stream position of the threshold crossing that started it */
  crossing: string;
  startedAt: number;
  pack: PackId;
  /** the pack's credits: what the top-up will add once paid (see `awaiting`) */
  credits: number;
  price: string;
  customer: string;
  paymentMethod: string;
  /** set once the invoice exists: a retry pays that invoice, never a new one */
  invoiceId?: string;
  /**
   * pay calls Stripe answered with a 5xx. Stripe keeps the answer of a request it began under its
   * idempotency key for 24 hours, a 500 included, so a retry under the same key would get the same
   * 500 all day: the next pay has a key of its own. Paying twice is still impossible: a retry first
   * reads the invoice and pays only one that is still open.
   */
  payFailures?: number;
  /**
   * tries to make the invoice (create, item, finalize) Stripe answered with a 5xx: the next try
   * makes a new invoice under keys of its own, for the reason `payFailures` gives. An invoice a
   * failed try made is never recorded, so never paid by creditgate.
   */
  invoiceFailures?: number;
  /**
   * the invoices those tries made (known once created): a finalize answered 5xx may have run, and
   * its open invoice could be paid on its page. Before the recorded invoice is paid, open ones are
   * voided, and one found paid is the top-up's payment instead.
   */
  unusedInvoiceIds?: string[];
}

export interface AutoTopUpState {
  settings: AutoTopUpSettings;
  /** the last top-up's sequence number (0: none yet) */
  seq: number;
  /** "YYYY-MM" (UTC) of `startedThisMonth` */
  month: string;
  /** top-ups started this month, not counting declined ones (they spent nothing) */
  startedThisMonth: number;
  /** charge attempts this month, declined ones included: a card that declines is not tried without end */
  attemptsThisMonth: number;
  /** a top-up paid (or pending) whose credits `invoice.paid` has not brought yet: they count as there */
  awaiting?: { seq: number; credits: number };
  /** the month a crossing was refused for the month's limit: the next spend below the threshold in a later month tops up */
  waitingSince?: string;
  failuresInARow: number;
  /** why auto top-up is off when the user did not turn it off */
  disabledReason?: "failures";
  inFlight?: TopUpInFlight;
  /** the newest threshold crossing a top-up was started (or refused) for: each crossing is used once */
  lastCrossing?: string;
  lastAttempt?: TopUpAttempt;
  updatedAt: number;
}

/** A job from the change stream: the user's available credits crossed below their threshold. */
export interface TopUpJob {
  userId: string;
  /** the stream record's position (decimal digits): the crossing's identity */
  crossing: string;
}

/** Consecutive failures after which auto top-up turns itself off until the user turns it on again. */
export const TOP_UP_FAILURE_LIMIT = 3;
/** A top-up in flight this long without an outcome (its function died, Stripe was down) is resumed by the next job. */
export const STALE_IN_FLIGHT_MS = 60 * 60_000;
