import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { SQSBatchResponse, SQSEvent } from "aws-lambda";
import { webhookDeliverer } from "../lib/events/runtime.js";
import { logger } from "../lib/logger.js";

const deliver = webhookDeliverer();

/**
 * Queued webhook events → the app's endpoint, signed (Standard Webhooks). What failed stays on the
 * queue as a batch item failure, its next attempt already scheduled (backoff with jitter); what
 * failed for too long went to the dead-letter queue.
 */
export const handler = middy<SQSEvent, SQSBatchResponse>()
  .use(injectLambdaContext(logger))
  .handler(async (event) => {
    const { keep, results } = await deliver(event.Records);
    const counts = Object.fromEntries(["delivered", "retrying", "dead_lettered", "dropped"].map((result) => [result, results.filter((r) => r === result).length]));
    // every delivery failed or given up on is worth a line; a clean batch only at debug
    if (keep.length > 0 || counts.dead_lettered) logger.warn("webhook deliveries failed", { counts });
    else logger.debug("webhook deliveries", { counts });
    return { batchItemFailures: keep.map((itemIdentifier) => ({ itemIdentifier })) };
  });
