import { BusyError } from "../errors.js";
import { ContentionError } from "./dynamo-ledger-store.js";

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

/**
 * Runs an optimistic step until it settles. `step` returns a value to finish or `undefined` to go
 * again (it saw a newer account state). Contention errors are retried with jittered exponential
 * backoff. Every step is a conditional write keyed by a business fact, so a retry can never apply
 * anything twice; when attempts run out nothing was written and the caller gets a retryable 409.
 */
export async function untilSettled<T>(step: (attempt: number) => Promise<T | undefined>, maxAttempts = 30): Promise<T> {
  for (let attempt = 0; attempt < maxAttempts; attempt++) {
    try {
      const result = await step(attempt);
      if (result !== undefined) return result;
    } catch (error) {
      if (!isRetryable(error)) throw error;
      await sleep(Math.random() * Math.min(200, 5 * 2 ** attempt));
    }
  }
  throw new BusyError();
}
