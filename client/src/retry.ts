import { CreditgateError } from "./errors.js";

/** How an idempotent call is retried. */
export interface RetryOptions {
  /** attempts in all, the first included (default 5) */
  attempts?: number;
  /** the first backoff's ceiling, doubled each attempt (default 100 ms) */
  baseDelayMs?: number;
  /** the largest backoff ceiling (default 2 s) */
  maxDelayMs?: number;
}

const DEFAULTS: Required<RetryOptions> = { attempts: 5, baseDelayMs: 100, maxDelayMs: 2_000 };

/**
 * Whether sending the same request again is safe and may succeed: the answer never came (a network
 * error or a timeout: the server may have applied it, and the idempotency key makes the retry
 * answer the first result), a 5xx, or a 409 with `retryable: true`. Any other 4xx is the request's
 * own fault and is never retried.
 */
export function isRetryable(error: unknown): boolean {
  if (error instanceof CreditgateError) return error.status >= 500 || (error.status === 409 && error.retryable);
  // fetch rejects with a TypeError when the connection fails or drops; AbortSignal.timeout with a TimeoutError
  return error instanceof TypeError || (error instanceof Error && error.name === "TimeoutError");
}

/**
 * Runs `attempt` until it succeeds, a non-retryable error is thrown, or the attempts run out
 * (the last error is thrown). Backoff is "full jitter" (a random wait up to an exponentially growing
 * ceiling), so many callers retrying together spread out instead of arriving in waves. Hand-written:
 * openapi-fetch has no retry, and a retry library would not know which of our answers are safe to retry.
 */
export async function withRetry<T>(attempt: () => Promise<T>, options: RetryOptions = {}): Promise<T> {
  // an option given as undefined (`attempts: config.retries`, unset) keeps its default
  const given = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as RetryOptions;
  const { attempts, baseDelayMs, maxDelayMs } = { ...DEFAULTS, ...given };
  if (!Number.isInteger(attempts) || attempts < 1) throw new RangeError(`retry attempts must be a whole number ≥ 1, not ${attempts}`);
  for (let tried = 1; ; tried++) {
    try {
      return await attempt();
    } catch (error) {
      if (tried >= attempts || !isRetryable(error)) throw error;
      const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** (tried - 1));
      await new Promise((resolve) => setTimeout(resolve, Math.random() * ceiling));
    }
  }
}
