import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { SQSBatchResponse, SQSEvent } from "aws-lambda";
import { topUpDeps } from "../lib/billing/runtime.js";
import { logger } from "../lib/logger.js";
import { runTopUpJobs } from "../lib/topup/consume.js";

// Cold start: config validated, clients created once per container.
const deps = topUpDeps();

/**
 * Auto top-up's jobs (lib/topup): each a threshold crossing the change stream saw. A job that
 * failed in a way a retry can fix stays on the queue (a batch item failure) and resumes the same
 * top-up under the same Stripe idempotency keys; after the queue's last receive it goes to the
 * dead-letter queue, which alarms.
 */
export const handler = middy<SQSEvent, SQSBatchResponse>()
  .use(injectLambdaContext(logger))
  .handler(async (event) => {
    const { retry } = await runTopUpJobs(deps.billing, event.Records);
    return { batchItemFailures: retry.map((itemIdentifier) => ({ itemIdentifier })) };
  });
