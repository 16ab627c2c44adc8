import type { LedgerDeps } from "../ledger/deps.js";
import { grantAllowanceIfDue } from "../ledger/grant.js";
import { untilSettled } from "../ledger/retry.js";
import { materializeOutbox, releaseExpiredHolds } from "../ledger/settle.js";
import type { ScheduleIndex, ScheduleStore } from "./schedule-store.js";

export interface SweepSummary {
  /** due accounts the sweep reached (grant index + hold index) */
  due: number;
  granted: number;
  /** due by the index but nothing to grant on a consistent read (granted meanwhile, e.g. lazily) */
  skipped: number;
  released: number;
  failed: number;
  /** false when the time budget ran out; the rest stays due and the next run picks it up */
  complete: boolean;
}

/** Reading a page of a due index is retried this many times on throttling before the run gives up. */
const INDEX_READ_ATTEMPTS = 6;

/**
 * Part of a due index could not be read even after retries. The run went on with the other
 * shards and indexes (abandoned holds are still released when a grant shard is unreadable), then
 * ends with this error carrying what it did (to be logged and counted); what it could not read
 * stays due for the next run.
 */
export class SweepAbortedError extends Error {
  constructor(
    readonly summary: SweepSummary,
    cause: unknown,
    readonly unreadablePages: number,
  ) {
    super(`sweep incomplete: ${unreadablePages} page(s) of the due indexes could not be read`, { cause });
    this.name = "SweepAbortedError";
  }
}

export interface SweepOptions {
  /** ms left before the Lambda times out (context.getRemainingTimeInMillis) */
  remainingMs: () => number;
  /** stop starting new work when less than this is left */
  safetyMs?: number;
  concurrency?: number;
  pageSize?: number;
  onFailure?: (userId: string, index: ScheduleIndex, error: unknown) => void;
}

/**
 * The scheduled sweep: grants every due scheduled allowance (free every 30 days, annual plans
 * monthly) and releases abandoned holds. It reads only the sparse `grantDue` / `holdDue` indexes
 * in their due range, so its cost grows with the number of due accounts, not with all accounts.
 *
 * It needs no cursor to resume: granting moves an account's `nextGrantAt` past now (out of the
 * due range) and releasing moves `holdDueAt`, so whatever a cut-off run did not reach is still
 * due for the next run, and whatever it did is not. Every grant is keyed by its period, so even
 * a stale index read or a race with a lazy grant cannot grant twice.
 */
export async function runSweep(deps: LedgerDeps, schedule: ScheduleStore, options: SweepOptions): Promise<SweepSummary> {
  const { safetyMs = 10_000, concurrency = 8, pageSize = 100 } = options;
  const summary: SweepSummary = { due: 0, granted: 0, skipped: 0, released: 0, failed: 0, complete: true };
  const outOfTime = () => options.remainingMs() < safetyMs;

  async function visit(index: ScheduleIndex, userId: string): Promise<void> {
    summary.due += 1;
    try {
      if (index === "grantDue") {
        const result = await grantAllowanceIfDue(deps, userId);
        if (result.granted && result.applied) summary.granted += 1;
        else summary.skipped += 1;
      } else {
        // Awaited first: `summary.released += await …` would read the counter before the await and
        // lose the updates of the visits running concurrently.
        const released = (await releaseExpiredHolds(deps, userId)).length;
        summary.released += released;
        await materializeOutbox(deps, userId); // only non-empty after a crash mid-settle
        await schedule.refreshHoldDue(userId);
      }
    } catch (error) {
      // One bad account never stops the rest; it stays due and is retried next run.
      summary.failed += 1;
      try {
        options.onFailure?.(userId, index, error);
      } catch {
        // a failing reporter (the logger) must not abandon the visits still in flight
      }
    }
  }

  const now = deps.now();
  const unreadable: unknown[] = [];
  for (const index of ["grantDue", "holdDue"] as const) {
    for (const shard of schedule.shards) {
      let start: DuePageStart;
      do {
        if (outOfTime()) {
          summary.complete = false;
          return summary;
        }
        const from = start;
        let page: Awaited<ReturnType<ScheduleStore["due"]>>;
        try {
          page = await untilSettled(() => schedule.due(index, shard, now, pageSize, from), INDEX_READ_ATTEMPTS);
        } catch (error) {
          unreadable.push(error); // the rest of this shard stays due; go on with the others
          break;
        }
        const finished = await forEachWithConcurrency(page.userIds, concurrency, outOfTime, (userId) => visit(index, userId));
        if (!finished) {
          summary.complete = false;
          return summary;
        }
        start = page.next;
      } while (start);
    }
  }
  if (unreadable.length > 0) {
    summary.complete = false;
    throw new SweepAbortedError(summary, unreadable[0], unreadable.length);
  }
  return summary;
}

type DuePageStart = Parameters<ScheduleStore["due"]>[4];

/**
 * Runs `work` over items with at most `limit` in flight, starting nothing once `stop()` is true.
 * Hand-written (a dozen lines) rather than pulling in p-limit: it also needs the stop check.
 * Returns false when it stopped early.
 */
async function forEachWithConcurrency<T>(
  items: T[],
  limit: number,
  stop: () => boolean,
  work: (item: T) => Promise<void>,
): Promise<boolean> {
  let next = 0;
  let stopped = false;
  const worker = async () => {
    while (next < items.length) {
      if (stop()) {
        stopped = true;
        return;
      }
      const item = items[next++] as T;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return !stopped;
}
