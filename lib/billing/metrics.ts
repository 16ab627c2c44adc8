import { Metrics, MetricUnit } from "@aws-lambda-powertools/metrics";

/** Billing's CloudWatch metrics (EMF, namespace `creditgate`, dimension `service`); infra/stack.ts alarms on them. */
export const BILLING_METRICS = {
  /** a user has two live subscriptions at once (pays twice): see the ERROR log for which */
  secondLiveSubscription: "SecondLiveSubscription",
} as const;

/** the same namespace as the sweep's metrics (infra/stack.ts METRICS_NAMESPACE) */
export const BILLING_METRICS_NAMESPACE = "creditgate";

const metrics = new Metrics({ namespace: BILLING_METRICS_NAMESPACE, serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "creditgate" });

/**
 * Counts one occurrence, written at once as its own EMF line: billing runs inside request
 * handlers that have no metrics middleware to flush stored metrics at the end.
 */
export function countMetric(name: string): void {
  metrics.singleMetric().addMetric(name, MetricUnit.Count, 1);
}
