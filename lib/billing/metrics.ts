import { MetricUnit } from "@aws-lambda-powertools/metrics";
import { createMetrics } from "../metrics.js";

/** Billing's CloudWatch metrics (EMF, lib/metrics namespace, dimension `service`); infra/stack.ts alarms on them. */
export const BILLING_METRICS = {
  /** a user has two live subscriptions at once (pays twice): see the ERROR log for which */
  secondLiveSubscription: "SecondLiveSubscription",
} as const;

const metrics = createMetrics();

/**
 * Counts one occurrence, written at once as its own EMF line: billing runs inside request
 * handlers that have no metrics middleware to flush stored metrics at the end.
 */
export function countMetric(name: string): void {
  metrics.singleMetric().addMetric(name, MetricUnit.Count, 1);
}
