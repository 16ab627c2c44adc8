import { MetricUnit, Metrics } from "@aws-lambda-powertools/metrics";

/** The EMF namespace every function writes its metrics to; infra/constructs/alarms.ts alarms on it. */
export const METRICS_NAMESPACE = "creditgate";

/** A function's Powertools metrics: that namespace, and the `service` dimension the alarms match. */
export function createMetrics(): Metrics {
  return new Metrics({ namespace: METRICS_NAMESPACE, serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "creditgate" });
}

const counts = createMetrics();

/**
 * Counts one occurrence, written at once as its own EMF line: billing and the proxy run inside
 * handlers that have no metrics middleware to flush stored metrics at the end.
 */
export function countMetric(name: string, dimensions: Record<string, string> = {}): void {
  const single = counts.singleMetric();
  for (const [dimension, value] of Object.entries(dimensions)) single.addDimension(dimension, value);
  single.addMetric(name, MetricUnit.Count, 1);
}
