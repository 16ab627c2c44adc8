import { MetricUnit } from "@aws-lambda-powertools/metrics";
import { logMetrics } from "@aws-lambda-powertools/metrics/middleware";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { Context, ScheduledEvent } from "aws-lambda";
import { type ParkedRetrySummary, retryDueParkedEvents } from "../lib/billing/index.js";
import { type SweepDeps, sweepDeps } from "../lib/billing/runtime.js";
import { logger } from "../lib/logger.js";
import { createMetrics } from "../lib/metrics.js";
import { runSweep, SweepAbortedError, type SweepSummary } from "../lib/sweep/run-sweep.js";

const metrics = createMetrics();

/** What one run did: the due accounts (lib/sweep) and the parked Stripe events it retried (lib/billing/parked). */
export type SweepRunSummary = SweepSummary & { parked: ParkedRetrySummary };

const SAFETY_MS = 15_000;

/**
 * The scheduled sweep (EventBridge): grants due allowances and releases abandoned holds, then
 * retries the parked Stripe events that are due (at most `parkedRetriesPerRun`). It stops 15 s
 * before the Lambda deadline; what it did not reach stays due and the next scheduled run picks it up.
 */
export async function sweep(deps: SweepDeps, context: Pick<Context, "getRemainingTimeInMillis">): Promise<SweepRunSummary> {
  const outOfTime = () => context.getRemainingTimeInMillis() < SAFETY_MS;
  let summary: SweepSummary;
  let aborted: SweepAbortedError | undefined;
  try {
    summary = await runSweep(deps.ledger, deps.schedule, {
      remainingMs: () => context.getRemainingTimeInMillis(),
      safetyMs: SAFETY_MS,
      concurrency: 8,
      onFailure: (userId, index, error) => logger.error("sweep: account failed", { userId, index, error: error as Error }),
    });
  } catch (error) {
    if (!(error instanceof SweepAbortedError)) throw error;
    // An unreadable due index must not also hold back the parked events: retry them, report
    // everything, then fail the invocation (the Errors alarm and the on-failure destination see
    // it; the next scheduled run picks up whatever is still due).
    aborted = error;
    summary = error.summary;
  }
  const parked = await retryParked(deps, outOfTime);
  const run = { ...summary, parked };
  report(run, aborted ? "sweep aborted" : "sweep summary");
  if (aborted) throw aborted;
  return run;
}

/** The parked-event retry of a run; a failure to even list them is logged and left for the next run. */
async function retryParked(deps: SweepDeps, outOfTime: () => boolean): Promise<ParkedRetrySummary> {
  if (outOfTime()) return { retried: 0, resolved: 0, stillParked: 0, failed: 0 };
  try {
    return await retryDueParkedEvents(deps.billing, { limit: deps.parkedRetriesPerRun, stop: outOfTime });
  } catch (error) {
    logger.error("sweep: parked stripe events could not be listed", { error: error as Error });
    return { retried: 0, resolved: 0, stillParked: 0, failed: 1 };
  }
}

function report(summary: SweepRunSummary, message: string): void {
  if (summary.complete && summary.parked.failed === 0) logger.info(message, { summary });
  else logger.warn(message, { summary });
  metrics.addMetric("SweepDue", MetricUnit.Count, summary.due);
  metrics.addMetric("SweepGranted", MetricUnit.Count, summary.granted);
  metrics.addMetric("SweepSkipped", MetricUnit.Count, summary.skipped);
  metrics.addMetric("SweepReleased", MetricUnit.Count, summary.released);
  metrics.addMetric("SweepFailed", MetricUnit.Count, summary.failed);
  metrics.addMetric("SweepIncomplete", MetricUnit.Count, summary.complete ? 0 : 1);
  metrics.addMetric("SweepParkedRetried", MetricUnit.Count, summary.parked.retried);
  metrics.addMetric("SweepParkedResolved", MetricUnit.Count, summary.parked.resolved);
  metrics.addMetric("SweepParkedFailed", MetricUnit.Count, summary.parked.failed);
}

const deps = sweepDeps();

export const handler = middy<ScheduledEvent, SweepRunSummary>()
  .use(injectLambdaContext(logger))
  .use(logMetrics(metrics))
  .handler((_event, context) => sweep(deps, context));
