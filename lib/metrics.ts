import { Metrics } from "@aws-lambda-powertools/metrics";

/** The EMF namespace every function writes its metrics to; infra/constructs/alarms.ts alarms on it. */
export const METRICS_NAMESPACE = "creditgate";

/** A function's Powertools metrics: that namespace, and the `service` dimension the alarms match. */
export function createMetrics(): Metrics {
  return new Metrics({ namespace: METRICS_NAMESPACE, serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "creditgate" });
}
