import type { AccountRecord, Bucket, EntryReason, LedgerEntry } from "./account.js";
import { applyToSplit, splitOf } from "./split.js";
import type { AccountCommit, CommitOutcome } from "./store.js";

/** A business fact that moves credits, before it is numbered and written. */
export interface CreditFact {
  key: string;
  amount: number;
  bucket: Bucket;
  reason: EntryReason;
  refs?: Record<string, string | number>;
}

/**
 * Numbers facts after the account's current `seq`, computes each entry's `balanceAfter`, and
 * rebases the allowance/purchased split. The commit is conditioned on that `seq`, so what is
 * computed here is exactly what lands, or nothing does.
 */
export function commitForFacts(
  account: AccountRecord,
  facts: CreditFact[],
  now: number,
  extra: Omit<AccountCommit, "userId" | "expectedSeq" | "entries" | "balanceDelta" | "availableDelta"> = {},
): AccountCommit {
  let split = splitOf(account);
  let balance = account.balance;
  const entries: LedgerEntry[] = facts.map((fact, index) => {
    split = applyToSplit(split, fact.amount, fact.bucket);
    balance += fact.amount;
    return {
      userId: account.userId,
      key: fact.key,
      amount: fact.amount,
      balanceAfter: balance,
      seq: account.seq + index + 1,
      reason: fact.reason,
      bucket: fact.bucket,
      refs: fact.refs ?? {},
      createdAt: now,
    };
  });
  const total = balance - account.balance;
  return {
    userId: account.userId,
    expectedSeq: account.seq,
    entries,
    balanceDelta: total,
    availableDelta: total,
    ...extra,
    set: { allowanceBase: split.allowance, purchasedBase: split.purchased, spent: 0, ...extra.set },
  };
}

export type FactResult =
  | { applied: true; entries: LedgerEntry[]; account: AccountRecord }
  | { applied: false; duplicateKey: string };

/** Resolves a commit outcome: applied, a duplicate of an earlier fact, or `undefined` to retry. */
export function resolveFactCommit(
  outcome: CommitOutcome,
  commit: AccountCommit,
  account: AccountRecord,
): FactResult | "stale" {
  if (outcome.kind === "duplicate") return { applied: false, duplicateKey: outcome.key };
  if (outcome.kind === "stale") return "stale";
  const last = commit.entries.at(-1);
  return {
    applied: true,
    entries: commit.entries,
    account: {
      ...account,
      ...commit.set,
      seq: commit.expectedSeq + commit.entries.length,
      balance: last ? last.balanceAfter : account.balance,
      available: account.available + commit.availableDelta,
    } as AccountRecord,
  };
}
