/** The proxy's CloudWatch metrics (EMF, lib/metrics namespace, dimension `service`); infra/constructs/alarms.ts alarms on them. */
export const PROXY_METRICS = {
  /** a finished call could not be charged: its hold expires and the sweep releases it (the user is not charged) */
  settleFailed: "ProxySettleFailed",
  /** a call was charged by the estimate, its usage never came (dimension `reason`) */
  estimatedUsage: "ProxyEstimatedUsage",
} as const;
