import { BusyError } from "../errors.js";
import { ContentionError } from "./store.js";

const RETRYABLE_NAMES = new Set([
  "ContentionError",
  "ThrottlingException",
  "ProvisionedThroughputExceededException",
  "RequestLimitExceeded",
  "TransactionConflictException",
  "TransactionInProgressException",
  "InternalServerError",
]);

export function isRetryable(error: unknown): boolean {
  return error instanceof ContentionError || (error instanceof Error && RETRYABLE_NAMES.has(error.name));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Full-jitter exponential backoff, capped: contenders on one hot account spread out instead of colliding again. */
const backoffMs = (attempt: number) => Math.random() * Math.min(250, 4 * 2 ** attempt);

/**
 * Runs an optimistic step until it settles. `step` returns a value to finish or `undefined` to go
 * again (it saw a newer account state). The first stale retry is immediate (the refused write
 * returned the current state); later ones, and contention errors, back off with jitter. Every step
 * is a conditional write keyed by a business fact, so a retry can never apply anything twice;
 * when attempts run out nothing was written and the caller gets a retryable 409.
 */
export async function untilSettled<T>(step: (attempt: number) => Promise<T | undefined>, maxAttempts = 40): Promise<T> {
  let lastError: unknown;
  for (let attempt = 0; attempt < maxAttempts; attempt++) {
    try {
      const result = await step(attempt);
      if (result !== undefined) return result;
      if (attempt > 0) await sleep(backoffMs(attempt));
    } catch (error) {
      if (!isRetryable(error)) throw error;
      lastError = error;
      await sleep(backoffMs(attempt));
    }
  }
  throw new BusyError(lastError);
}
