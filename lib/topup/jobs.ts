import type { TableChange } from "../events/model.js";
import type { TopUpJob } from "./model.js";

/**
 * The top-up jobs a batch of table changes means: one per change of an account that takes its
 * `available` from at or above its auto top-up threshold to below it, or that turns auto top-up
 * on (or moves its threshold) while already below; and, while a crossing refused for the month's
 * limit waits (`autoTopUpWaiting`), each spend below it. Pure, like the events: a batch delivered again
 * yields the same jobs, identified by the stream position of their crossing, which each top-up
 * uses once (lib/topup/rules.ts `decideStart`).
 */
export function topUpJobsOf(changes: readonly TableChange[]): TopUpJob[] {
  const jobs: TopUpJob[] = [];
  for (const change of changes) {
    if (change.kind !== "account") continue;
    const threshold = change.after.autoTopUpBelow;
    if (threshold === undefined || change.after.available >= threshold) continue;
    const before = change.before;
    const wasBelow = before !== undefined && before.autoTopUpBelow === threshold && before.available < threshold;
    // a crossing refused for the month's limit waits: a spend below the threshold is then a job
    // (the job tops up only in a later month, lib/topup/rules.ts decideStart)
    const spentWhileWaiting = change.after.autoTopUpWaiting === true && before !== undefined && change.after.available < before.available;
    if (!wasBelow || spentWhileWaiting) jobs.push({ userId: change.after.userId, crossing: change.position });
  }
  return jobs;
}
