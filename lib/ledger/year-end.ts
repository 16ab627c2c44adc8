import * as z from "zod/mini";
import "../zod-locale.js";
import { logger } from "../logger.js";
import { periodIndexAt } from "../periods.js";
import { parseInput } from "../validation.js";
import { type CreditFact, commitForFacts, resolveFactCommit } from "./apply-facts.js";
import type { LedgerDeps } from "./deps.js";
import { ensureAccountOnce } from "./ensure-account.js";
import { endYear } from "./paid-year.js";
import { untilSettled } from "./retry.js";
import { userIdSchema } from "./validation.js";

const yearEndSchema = z.object({
  userId: userIdSchema,
  /** the annual year's start (epoch ms): its subscription's period start */
  anchor: z.number().check(z.int(), z.minimum(0)),
  /** when Stripe stopped billing it (epoch ms): the switch's new period start, or the cancellation */
  endedAt: z.number().check(z.int(), z.minimum(0)),
  /** the subscription whose year it is: another subscription's year starting seconds away is not ended */
  subscription: z.optional(z.string().check(z.minLength(1), z.maxLength(255))),
});
export type YearEnd = z.infer<typeof yearEndSchema>;

export interface YearEndResult {
  /** the month in progress at the end: the last one the year grants */
  endedAfter: number;
}

/**
 * An annual year left before its end (a portal switch to another interval or period, an
 * immediate cancellation): records the end on the year, so no later month grants from it, and in
 * the same conditional commit, under `year-end#<year start>#<month>`, grants the months up to the
 * end the schedule had not reached (the month in progress at the end stays, as the switch's own
 * invoice does) and undoes what months after the end granted anyway (its events came after a month
 * boundary; like a refund, that may leave the balance below zero: the credits may be spent). See
 * `endYear` (lib/ledger/paid-year.ts). Idempotent: an end recorded at or before this month changes nothing.
 *
 * A refunded or disputed payment of the year counted those months in its clawback; the caller
 * settles its charge again afterwards (lib/billing/refunds.ts, `settleYearEndClaws`).
 */
export async function endAnnualYear(deps: LedgerDeps, input: YearEnd): Promise<YearEndResult> {
  const { userId, anchor, endedAt, subscription } = parseInput(yearEndSchema, input);
  const endedAfter = periodIndexAt(anchor, endedAt, { kind: "calendarMonth" });
  return untilSettled(async () => {
    const account = await ensureAccountOnce(deps, userId);
    const ended = endYear(account.paidYears, anchor, endedAfter, subscription);
    if (!ended) return { endedAfter };
    // Always an entry (of 0 credits when nothing is undone): it moves the account's `seq`, so a
    // month grant that read the account before the end fails its commit and is decided again
    // from the ended year, instead of writing back its copy of the years without the end.
    const fact: CreditFact = {
      key: `year-end#${new Date(anchor).toISOString()}#${endedAfter}`,
      amount: ended.credits,
      bucket: "allowance",
      reason: ended.credits < 0 ? "refund" : "allowance",
      refs: { yearStart: anchor, endedAfterMonth: endedAfter, monthsGranted: ended.monthsGranted, monthsUndone: ended.monthsUndone },
    };
    const commit = commitForFacts(account, [fact], deps.now(), { set: { paidYears: ended.years } });
    const result = resolveFactCommit(await deps.store.commit(commit), commit, account);
    if (result === "stale") return undefined;
    // a duplicate key: an earlier end at this month landed; read again and see it recorded
    if (!result.applied) return undefined;
    if (ended.monthsUndone > 0 || ended.monthsGranted > 0) {
      logger.warn("annual year ended: months settled at its end", {
        userId,
        endedAfter,
        monthsGranted: ended.monthsGranted,
        monthsUndone: ended.monthsUndone,
        credits: ended.credits,
      });
    }
    return { endedAfter };
  });
}
