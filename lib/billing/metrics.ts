/** Billing's CloudWatch metrics (EMF, lib/metrics namespace, dimension `service`); infra/constructs/alarms.ts alarms on them. */
export const BILLING_METRICS = {
  /** a user has two live subscriptions at once (pays twice): see the ERROR log for which */
  secondLiveSubscription: "SecondLiveSubscription",
  /** a verified Stripe event could not be applied and was parked (dimension `reason`): see the ERROR log */
  parkedStripeEvents: "ParkedStripeEvents",
} as const;
