import type { AccountRecord, HoldIdentity, HoldRecord, LedgerEntry, ReleaseMarker } from "./account.js";
import type { AdmissionRule } from "./admission.js";

/**
 * Transaction conflicts and throttling that survived the adapter's own retries: the write did
 * not happen and the caller retries it (lib/ledger/retry.ts). Part of the port: every adapter
 * reports contention with it.
 */
export class ContentionError extends Error {
  constructor(reason: string) {
    super(`DynamoDB contention: ${reason}`);
    this.name = "ContentionError";
  }
}

/**
 * Atomically applies ledger entries to an account: every entry is written only if its key is new,
 * and the account only if its `seq` still equals `expectedSeq` (so `balanceAfter` and the split
 * rebase are exact). All of it happens, or none of it.
 */
export interface AccountCommit {
  userId: string;
  expectedSeq: number;
  entries: LedgerEntry[];
  balanceDelta: number;
  availableDelta: number;
  spentDelta?: number;
  /** scalar attributes to overwrite (split rebase, period schedule, plan...) */
  set?: Partial<Omit<AccountRecord, "holds" | "holdSeq" | "holdBalance" | "rateCounters" | "outbox" | "outboxSeq" | "outboxBalance">>;
  remove?: (keyof AccountRecord)[];
  /** the account's balance must still be exactly this (settle's fast path: the hold id's balance is only a condition) */
  expectedBalance?: number;
  /** settle: the hold must still be open with exactly this reservation; it is closed */
  closeHold?: HoldIdentity & { reserved: number; model: string };
  /** consuming operations: `available` must be at least this much at commit time (docs/invariants.md, invariant 2) */
  requireAvailable?: number;
  /** allowance grants: the account's last granted period must be below this one */
  periodBelow?: number;
  /** late settles: this hold's release marker must exist and not be released by the caller since */
  markerNotReleased?: HoldIdentity;
}

export interface OutboxSettle {
  hold: HoldIdentity & { reserved: number; model: string };
  key: string;
  cost: number;
  refs: Record<string, string | number>;
  now: number;
  holdShard: string;
}

export type CommitOutcome =
  | { kind: "committed" }
  /** an entry with this key exists already: the fact was applied before */
  | { kind: "duplicate"; key: string }
  /** the account did not match (seq moved on, hold gone, ...): here is what it is now */
  | { kind: "stale"; account: AccountRecord | undefined };

export interface ReserveRequest {
  userId: string;
  requestId: string;
  hold: HoldRecord;
  holdShard: string;
  /** the admission rules (lib/ledger/admission.ts): the write's whole condition */
  rules: readonly AdmissionRule[];
  /** with a rate limit: the minute whose counter the reserve bumps (the previous one is dropped) */
  rateCounterMinute?: number;
}

export type ReserveOutcome =
  | { kind: "reserved"; account: AccountRecord }
  /** nothing was written; the account as it was (undefined when it does not exist) */
  | { kind: "rejected"; account: AccountRecord | undefined };

export type ReleaseOutcome =
  | { kind: "released"; account: AccountRecord }
  | { kind: "marked" }
  | { kind: "stale"; account: AccountRecord | undefined };

/** The ledger's persistence port. The DynamoDB adapter is the only implementation that matters. */
export interface LedgerStore {
  getAccount(userId: string): Promise<AccountRecord | undefined>;
  /** Creates the account with its first entries; false when it already exists. */
  createAccount(account: AccountRecord, entries: LedgerEntry[]): Promise<boolean>;
  /** Admission: one write, conditioned on the admission rules, that reserves `hold.reserved` credits, or rejects with the old state. */
  reserve(request: ReserveRequest): Promise<ReserveOutcome>;
  commit(commit: AccountCommit): Promise<CommitOutcome>;
  /** Closes an open hold without charging and records why; `marked` if a marker already existed. */
  release(hold: HoldIdentity & { reserved: number }, marker: ReleaseMarker): Promise<ReleaseOutcome>;
  /**
   * The contended settle: closes the hold and applies the charge with one commutative UpdateItem
   * (no seq condition, so concurrent settles of one account never refuse each other), recording
   * the entry in the account's outbox with the seq and balance it was applied at. `stale` when the
   * hold is no longer open as described.
   */
  settleToOutbox(request: OutboxSettle): Promise<{ kind: "applied"; entry: LedgerEntry } | { kind: "stale" }>;
  /** Writes outbox entries as ledger items (idempotent by key) and removes them from the outbox. */
  materialize(userId: string, entries: LedgerEntry[]): Promise<void>;
  /**
   * Records that the caller released a hold the sweep expired, unless the entry `settleKey` (its
   * late settle) exists: "released" when recorded now or before, "settled" when the settle won.
   */
  markReleasedAfterExpiry(hold: HoldIdentity, settleKey: string, at: number): Promise<"released" | "settled">;
  getEntry(userId: string, key: string): Promise<LedgerEntry | undefined>;
  getReleaseMarker(hold: HoldIdentity): Promise<ReleaseMarker | undefined>;
  /** Newest first, entries with seq < beforeSeq (when given). */
  listEntries(userId: string, options: { limit: number; beforeSeq?: number }): Promise<LedgerEntry[]>;
  /** Every entry of an account, for audits. */
  allEntries(userId: string): Promise<LedgerEntry[]>;
}
