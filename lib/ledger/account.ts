import type { BillingInterval, PlanId } from "../catalog.js";
import type { HoldRef } from "./hold-id.js";
import type { PaidYear } from "./paid-year.js";
import { ownValue } from "../own-keys.js";

/**
 * The ledger's model: the account item, its holds and outbox, the ledger entries and the records
 * of closed holds, with the pure rules on them (split, outbox entries). It depends on nothing of
 * the ledger but the paid-year model; the port (store.ts), the use cases and the adapter depend on it.
 */

/** An open reservation of credits for one chat, keyed in the account by the caller's requestId. */
export interface HoldRecord {
  /** credits reserved */
  reserved: number;
  /** model the reservation was priced for */
  model: string;
  /** epoch ms */
  createdAt: number;
  /** random tag: with the requestId, the hold's identity (two holds may share a millisecond) */
  tag: string;
  /** epoch ms: after this the sweep may release it */
  expiresAt: number;
}

/** What the id of the hold an account carries for `requestId` says of it (lib/ledger/hold-id.ts). */
export function holdRefOf(userId: string, requestId: string, hold: HoldRecord, account: Pick<AccountRecord, "holdSeq" | "holdBalance">): HoldRef {
  return {
    userId,
    requestId,
    tag: hold.tag,
    seq: ownValue(account.holdSeq, requestId) ?? 0,
    balance: ownValue(account.holdBalance, requestId) ?? 0,
    model: hold.model,
    reserved: hold.reserved,
  };
}

/** A settle entry waiting in the account's outbox (see AccountRecord.outbox). */
export interface PendingEntry {
  amount: number;
  refs: Record<string, string | number>;
  createdAt: number;
}

export interface SubscriptionState {
  id: string;
  status: string;
  priceId: string;
  periodStart: number;
  periodEnd: number;
  cancelAtPeriodEnd: boolean;
  /** event time (epoch ms) of this state: an older event for it changes nothing */
  lastEventAt: number;
}

export type EntryReason =
  | "signup"
  | "allowance"
  | "invoice"
  | "pack"
  | "upgrade"
  | "admin"
  | "settle"
  | "refund"
  | "dispute"
  /** credits a refund or dispute took, given back when its money came back to the merchant */
  | "reinstate"
  | "expire";

/** One ledger entry; `key` is its idempotency key, derived from the business fact (docs/invariants.md, invariant 3). */
export interface LedgerEntry {
  userId: string;
  key: string;
  amount: number;
  balanceAfter: number;
  seq: number;
  reason: EntryReason;
  bucket: Bucket;
  refs: Record<string, string | number>;
  createdAt: number;
}

/**
 * A hold is open under its requestId (so a retried authorize finds it), but its identity also
 * includes a random tag drawn when it opens: a requestId authorized again after its hold closed is a new hold.
 */
export interface HoldIdentity {
  userId: string;
  requestId: string;
  tag: string;
}

/** The recorded outcome of a hold that was released instead of settled. */
export interface ReleaseMarker {
  userId: string;
  requestId: string;
  /** the hold's tag: with requestId, the hold's identity */
  tag: string;
  released: number;
  /** the model the hold was reserved for: a settle after the release is priced from it, never from the hold id */
  model: string;
  cause: "released" | "expired";
  balance: number;
  at: number;
  /**
   * When the caller released a hold the sweep had already expired: that release stands, so no
   * later settle charges it (the same first-outcome rule as a release before expiry).
   */
  releasedByCallerAt?: number;
}

/**
 * The account item. Balances are integers of credits.
 *
 * `balance` is the sum of all ledger entries; `available = balance - held` is stored (not derived)
 * because DynamoDB conditions cannot do arithmetic, and authorize must admit with one conditional
 * write (`available >= cost`). `held` is derived as `balance - available`.
 *
 * The allowance/purchased split is kept as a base plus a spend counter (`allowanceBase`,
 * `purchasedBase`, `spent`): settles only ever add to `spent`, so the hot path stays one additive
 * write, and any operation that moves credits between buckets (grants, expiry, clawbacks) rebases
 * under the account's `seq` condition. See `splitOf` (lib/ledger/split.ts) for how the current split is derived.
 */
export interface AccountRecord {
  userId: string;
  plan: PlanId;
  interval: BillingInterval;
  createdAt: number;
  balance: number;
  available: number;
  /** number of ledger entries applied; every ledger write is conditioned on it */
  seq: number;
  allowanceBase: number;
  purchasedBase: number;
  spent: number;
  holds: Record<string, HoldRecord>;
  /** seq and balance when each hold was created: the settle fast path's expected state */
  holdSeq: Record<string, number>;
  holdBalance: Record<string, number>;
  /**
   * Outbox of settle entries applied to the balance but not yet written as ledger items (the
   * contended settle path; see settle.ts). `outboxSeq`/`outboxBalance` hold the account's seq and balance
   * just before each was applied, so its entry gets an exact seq and balanceAfter. Normally emptied
   * within the same request; after a crash, by the next settle of the hold or by the sweep.
   */
  outbox: Record<string, PendingEntry>;
  outboxSeq: Record<string, number>;
  outboxBalance: Record<string, number>;
  /** the allowance period last granted (0 = the signup period) and its schedule */
  periodIndex: number;
  periodAnchor: number;
  nextGrantAt?: number;
  grantShard?: string;
  holdShard?: string;
  holdDueAt?: number;
  /** per-minute authorize counters for the rate limit, keyed by minute number */
  rateCounters: Record<string, number>;
  stripeCustomerId?: string;
  subscription?: SubscriptionState;
  paymentFailedAt?: number;
  /** annual plans: what each payment of the current (and the previous) year paid for its scheduled months (lib/ledger/paid-year.ts) */
  paidYears?: PaidYear[];
}

export function heldOf(account: Pick<AccountRecord, "balance" | "available">): number {
  return account.balance - account.available;
}

export type Bucket = "allowance" | "purchased";

/** The ledger entry an outbox slot stands for: placed right after the seq/balance it was applied at. */
export function outboxEntry(
  userId: string,
  key: string,
  pending: PendingEntry,
  seqBefore: number,
  balanceBefore: number,
): LedgerEntry {
  return {
    userId,
    key,
    amount: pending.amount,
    balanceAfter: balanceBefore + pending.amount,
    seq: seqBefore + 1,
    reason: "settle",
    bucket: "allowance",
    refs: pending.refs,
    createdAt: pending.createdAt,
  };
}

/** Every entry waiting in an account's outbox. */
export function outboxEntries(account: AccountRecord): LedgerEntry[] {
  return Object.entries(account.outbox ?? {}).map(([key, pending]) =>
    outboxEntry(account.userId, key, pending, ownValue(account.outboxSeq, key) ?? 0, ownValue(account.outboxBalance, key) ?? 0),
  );
}
