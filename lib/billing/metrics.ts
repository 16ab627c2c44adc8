import { MetricUnit } from "@aws-lambda-powertools/metrics";
import { createMetrics } from "../metrics.js";

/** Billing's CloudWatch metrics (EMF, lib/metrics namespace, dimension `service`); infra/constructs/alarms.ts alarms on them. */
export const BILLING_METRICS = {
  /** a user has two live subscriptions at once (pays twice): see the ERROR log for which */
  secondLiveSubscription: "SecondLiveSubscription",
  /** a verified Stripe event could not be applied and was parked (dimension `reason`): see the ERROR log */
  parkedStripeEvents: "ParkedStripeEvents",
} as const;

const metrics = createMetrics();

/**
 * Counts one occurrence, written at once as its own EMF line: billing runs inside request
 * handlers that have no metrics middleware to flush stored metrics at the end.
 */
export function countMetric(name: string, dimensions: Record<string, string> = {}): void {
  const single = metrics.singleMetric();
  for (const [dimension, value] of Object.entries(dimensions)) single.addDimension(dimension, value);
  single.addMetric(name, MetricUnit.Count, 1);
}
