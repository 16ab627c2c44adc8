import { MetricUnit } from "@aws-lambda-powertools/metrics";
import { logMetrics } from "@aws-lambda-powertools/metrics/middleware";
import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { Context, ScheduledEvent } from "aws-lambda";
import type { LedgerDeps } from "../lib/ledger/index.js";
import { logger } from "../lib/logger.js";
import { createMetrics } from "../lib/metrics.js";
import { sweepDeps } from "../lib/runtime.js";
import { runSweep, SweepAbortedError, type SweepSummary } from "../lib/sweep/run-sweep.js";
import type { ScheduleStore } from "../lib/sweep/schedule-store.js";

const metrics = createMetrics();

/**
 * The scheduled monthly-grant sweep (EventBridge). It stops 15 s before the Lambda deadline; what
 * it did not reach stays due in the index and the next scheduled run picks it up.
 */
export async function sweep(deps: { ledger: LedgerDeps; schedule: ScheduleStore }, context: Pick<Context, "getRemainingTimeInMillis">): Promise<SweepSummary> {
  let summary: SweepSummary;
  try {
    summary = await runSweep(deps.ledger, deps.schedule, {
      remainingMs: () => context.getRemainingTimeInMillis(),
      safetyMs: 15_000,
      concurrency: 8,
      onFailure: (userId, index, error) => logger.error("sweep: account failed", { userId, index, error: error as Error }),
    });
  } catch (error) {
    // Still report what the run did, then fail the invocation: the Errors alarm and the on-failure
    // destination see it, and the next scheduled run picks up whatever is still due.
    if (error instanceof SweepAbortedError) report(error.summary, "sweep aborted");
    throw error;
  }
  report(summary, "sweep summary");
  return summary;
}

function report(summary: SweepSummary, message: string): void {
  if (summary.complete) logger.info(message, { summary });
  else logger.warn(message, { summary });
  metrics.addMetric("SweepDue", MetricUnit.Count, summary.due);
  metrics.addMetric("SweepGranted", MetricUnit.Count, summary.granted);
  metrics.addMetric("SweepSkipped", MetricUnit.Count, summary.skipped);
  metrics.addMetric("SweepReleased", MetricUnit.Count, summary.released);
  metrics.addMetric("SweepFailed", MetricUnit.Count, summary.failed);
  metrics.addMetric("SweepIncomplete", MetricUnit.Count, summary.complete ? 0 : 1);
}

const deps = sweepDeps();

export const handler = middy<ScheduledEvent, SweepSummary>()
  .use(injectLambdaContext(logger))
  .use(logMetrics(metrics))
  .handler((_event, context) => sweep(deps, context));
