/**
 * When a failed delivery is tried again: exponential backoff with jitter, for up to `giveUpAfterMs`
 * (3 days by default) after the event was first queued; then it goes to the dead-letter queue.
 * Pure: the caller passes the clock and the random draw.
 */
export interface RetryPolicy {
  /** the wait after the first failed attempt (before jitter) */
  baseSeconds: number;
  /** no single wait is longer (SQS visibility timeouts stop at 12 hours) */
  maxSeconds: number;
  /** after this long since the event was queued, the next failure is the last */
  giveUpAfterMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { baseSeconds: 10, maxSeconds: 6 * 3600, giveUpAfterMs: 3 * 24 * 3600 * 1000 };

/** SQS's longest visibility timeout: a wait is never longer. */
export const SQS_MAX_VISIBILITY_SECONDS = 12 * 3600;

export type RetryDecision = { retryInSeconds: number } | { giveUp: true };

/**
 * After failed attempt number `attempt` (1 = the first), of an event queued at `queuedAt`: wait
 * base·2^(attempt−1), capped, with "equal jitter" (half fixed, half random, so retries of many
 * events spread out but none comes back at once), and never past the deadline. At or past the
 * deadline: give up.
 */
export function nextRetry(policy: RetryPolicy, attempt: number, queuedAt: number, now: number, random: number): RetryDecision {
  const deadline = queuedAt + policy.giveUpAfterMs;
  if (now >= deadline) return { giveUp: true };
  const exponential = Math.min(policy.maxSeconds, SQS_MAX_VISIBILITY_SECONDS, policy.baseSeconds * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  const jittered = exponential / 2 + (exponential / 2) * Math.min(Math.max(random, 0), 1);
  const untilDeadline = Math.ceil((deadline - now) / 1000);
  return { retryInSeconds: Math.max(1, Math.min(Math.round(jittered), untilDeadline)) };
}
