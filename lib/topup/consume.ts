import type { BillingDeps } from "../billing/deps.js";
import { logger } from "../logger.js";
import { ownValue } from "../own-keys.js";
import { userIdSchema } from "../ledger/validation.js";
import type { TopUpJob } from "./model.js";
import { runAutoTopUp, type TopUpRun } from "./run.js";

/** One queued job as the function receives it (an SQS message). */
export interface QueuedJob {
  messageId: string;
  body: string;
}

/** A job as the stream consumer queued it, or undefined (an unreadable body is dropped: a retry would not fix it). */
export function jobOf(body: string): TopUpJob | undefined {
  try {
    const parsed = JSON.parse(body) as Record<string, unknown>;
    const userId = ownValue(parsed, "userId");
    const crossing = ownValue(parsed, "crossing");
    if (typeof crossing !== "string" || !/^\d{1,64}$/.test(crossing) || !userIdSchema.safeParse(userId).success) return undefined;
    return { userId: userId as string, crossing };
  } catch {
    return undefined;
  }
}

/**
 * A batch of jobs, one after another (two jobs of one user must not race their Stripe calls).
 * Returns the message ids to try again: a job whose Stripe call may have acted unanswered (or
 * whose write failed) is delivered again and resumes the same top-up under the same keys.
 */
export async function runTopUpJobs(deps: BillingDeps, messages: readonly QueuedJob[]): Promise<{ retry: string[]; runs: (TopUpRun | "malformed")[] }> {
  const retry: string[] = [];
  const runs: (TopUpRun | "malformed")[] = [];
  for (const message of messages) {
    const job = jobOf(message.body);
    if (!job) {
      logger.error("auto top-up: unreadable job dropped", { messageId: message.messageId });
      runs.push("malformed");
      continue;
    }
    try {
      runs.push(await runAutoTopUp(deps, job));
    } catch (error) {
      logger.warn("auto top-up: job failed; it will be tried again", { userId: job.userId, error: (error as Error).message });
      retry.push(message.messageId);
    }
  }
  return { retry, runs };
}
