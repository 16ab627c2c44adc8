/**
 * The spending split, as pure functions (docs/invariants.md, invariant 6): spending takes allowance
 * credits before purchased ones, and what is spent beyond both is debt, carried as a negative
 * allowance. The account stores a base per bucket plus a spend counter (settles only add to
 * `spent`, so the hot path stays one additive write); every commit that moves credits rebases
 * the bases from these functions (lib/ledger/apply-facts.ts).
 */
import type { AccountRecord, Bucket } from "./account.js";

export interface Split {
  allowance: number;
  purchased: number;
}

/**
 * Current split: spending takes allowance credits before purchased ones (docs/invariants.md, invariant 6). Anything
 * spent beyond both buckets is debt, carried as a negative allowance so the next grant repays it
 * and purchased credits are never negative.
 */
export function splitOf(account: Pick<AccountRecord, "allowanceBase" | "purchasedBase" | "spent">): Split {
  const { allowanceBase, purchasedBase, spent } = account;
  const fromAllowance = Math.min(spent, Math.max(0, allowanceBase));
  const afterAllowance = spent - fromAllowance;
  const fromPurchased = Math.min(afterAllowance, Math.max(0, purchasedBase));
  const debt = afterAllowance - fromPurchased;
  return { allowance: allowanceBase - fromAllowance - debt, purchased: purchasedBase - fromPurchased };
}

/** Adds (positive) to one bucket, or takes (negative) from `bucket` first, then the other, then as debt. */
export function applyToSplit(split: Split, amount: number, bucket: Bucket): Split {
  if (amount >= 0) {
    return bucket === "allowance"
      ? { allowance: split.allowance + amount, purchased: split.purchased }
      : { allowance: split.allowance, purchased: split.purchased + amount };
  }
  let owed = -amount;
  const next = { ...split };
  const order: Bucket[] = bucket === "allowance" ? ["allowance", "purchased"] : ["purchased", "allowance"];
  for (const name of order) {
    const taken = Math.min(owed, Math.max(0, next[name]));
    next[name] -= taken;
    owed -= taken;
  }
  next.allowance -= owed;
  return next;
}
