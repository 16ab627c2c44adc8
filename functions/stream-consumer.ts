import { injectLambdaContext } from "@aws-lambda-powertools/logger/middleware";
import middy from "@middy/core";
import type { DynamoDBStreamEvent } from "aws-lambda";
import { streamConsumer } from "../lib/events/runtime.js";
import { logger } from "../lib/logger.js";

const consume = streamConsumer();

/**
 * The table's change stream → webhook events on the delivery queue (lib/events). A failure throws:
 * the event source mapping retries the batch, bisecting it, and finally sends its place in the
 * stream to the on-failure destination; a batch derived again yields the same event ids.
 */
export const handler = middy<DynamoDBStreamEvent, void>()
  .use(injectLambdaContext(logger))
  .handler(async (event) => {
    const { events, queued } = await consume(event.Records);
    if (events.length > 0) logger.debug("stream batch", { records: event.Records.length, events: events.length, queued, ids: events.map((e) => e.id) });
  });
