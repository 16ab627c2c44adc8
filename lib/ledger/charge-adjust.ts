import * as z from "zod/mini";
import "../zod-locale.js";
import { ValidationError } from "../errors.js";
import { type CreditFact, commitForFacts, resolveFactCommit } from "./apply-facts.js";
import type { LedgerDeps } from "./deps.js";
import { ensureAccountOnce } from "./ensure-account.js";
import { untilSettled } from "./retry.js";
import type { AccountRecord, LedgerEntry } from "./account.js";
import type { PaidYear } from "./paid-year.js";
import { parseInput } from "../validation.js";
import { creditAmountSchema, entryKeySchema, userIdSchema } from "./validation.js";

const adjustmentEntrySchema = z.object({
  key: entryKeySchema,
  amount: creditAmountSchema,
  bucket: z.enum(["allowance", "purchased"]),
  reason: z.enum(["refund", "dispute", "reinstate"]),
  refs: z.optional(z.record(z.string(), z.union([z.string().check(z.maxLength(500)), z.number()]))),
});

/** What one refund or dispute fact changes, decided from the account as it is now. */
export interface ChargeAdjustment {
  /**
   * The fact's entry: negative takes credits back (refund, dispute), positive gives them back
   * (reinstate); 0 when only the schedule budget changes.
   */
  entry?: z.infer<typeof adjustmentEntrySchema>;
  /** the annual years with the refunded payment's share budget moved (lib/ledger/paid-year.ts); absent: unchanged */
  paidYears?: PaidYear[];
}

export type AdjustmentResult = { entry: LedgerEntry | undefined; balance: number };

/**
 * Applies a refund's or dispute's credits and the annual share budget they imply in one
 * conditional commit, so neither lands without the other. `decide` reads whatever the decision
 * needs after the account was read, and is asked again whenever the account moved on before the
 * commit (a grant, a settle, another clawback), so what it decided from is what lands. An entry
 * whose key is in the ledger already is a duplicate: `decide` is asked again and sees it.
 *
 * A budget is only ever written with an entry (of 0 credits when nothing else moves): the entry
 * moves the account's `seq`, so a month the schedule is granting from the old budget fails its
 * commit and is decided again from this one, instead of overwriting it.
 *
 * Like `clawBack`, a take may leave the balance below zero (the credits may be spent); a give-back
 * goes to the bucket the credits were taken from.
 */
export async function adjustForCharge(
  deps: LedgerDeps,
  userIdInput: string,
  decide: (account: AccountRecord) => Promise<ChargeAdjustment>,
): Promise<AdjustmentResult> {
  const userId = parseInput(userIdSchema, userIdInput, "userId");
  return untilSettled(async () => {
    const account = await ensureAccountOnce(deps, userId);
    const decision = await decide(account);
    const entry = decision.entry ? parseInput(adjustmentEntrySchema, decision.entry) : undefined;
    const budgetChanges = decision.paidYears !== undefined;
    if (!entry) {
      if (budgetChanges) throw new ValidationError("a schedule budget is written with an entry", "entry");
      return { entry: undefined, balance: account.balance };
    }
    if (entry.reason === "reinstate" ? entry.amount < 0 : entry.amount > 0) {
      throw new ValidationError("a reinstatement gives credits back; a refund or dispute takes them", "amount");
    }
    if (entry.amount === 0 && !budgetChanges) throw new ValidationError("an entry of 0 credits only carries a schedule budget", "amount");
    const fact: CreditFact = { ...entry, refs: entry.refs ?? {} };
    const extra = decision.paidYears ? { set: { paidYears: decision.paidYears } } : {};
    const commit = commitForFacts(account, [fact], deps.now(), extra);
    const result = resolveFactCommit(await deps.store.commit(commit), commit, account);
    if (result === "stale" || !result.applied) return undefined;
    return { entry: result.entries[0], balance: result.account.balance };
  });
}
