import { GetQueueAttributesCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { inject } from "vitest";
import { loadConfig } from "../../lib/config.js";
import { buildDeliverDeps, buildDeliverer, buildStreamConsumer, sqsClient } from "../../lib/events/runtime.js";
import { type LocalEvents, startLocalEvents } from "../../infra/local/events.js";
import { LOCAL_WEBHOOK_QUEUES, type LocalSqs, startLocalSqs } from "../../infra/local/sqs-local.js";
import type { BillingDeps } from "../../lib/billing/deps.js";
import { jobOf, runTopUpJobs } from "../../lib/topup/consume.js";
import type { TopUpJob } from "../../lib/topup/model.js";

/**
 * The whole webhook pipeline over a test's table, as `npm start` runs it: the stream poller and
 * the consumer, the SQS stand-in, the queue poller and the deliverer (built from the same wiring
 * as the Lambdas, lib/events/runtime.ts), posting to `endpoint`.
 */
export interface EventsPipeline {
  sqs: LocalSqs;
  client: SQSClient;
  queueUrl: string;
  dlqUrl: string;
  events: LocalEvents;
  depth(url: string): Promise<number>;
  stop(): Promise<void>;
}

export async function startEventsPipeline(options: {
  tableName: string;
  endpoint?: { url: string; secret: string };
  env?: Record<string, string>;
  workers?: number;
  /** auto top-up's deps: crossings go to its queue and are run as functions/auto-topup.ts runs them */
  topUps?: BillingDeps;
  /** told of each top-up job that ran to its end (not to be tried again), whatever it decided */
  onTopUpJobsDone?: (jobs: TopUpJob[]) => void;
}): Promise<EventsPipeline> {
  const sqs = await startLocalSqs({ queues: LOCAL_WEBHOOK_QUEUES });
  const queueUrl = sqs.queueUrl("creditgate-webhooks");
  const dlqUrl = sqs.queueUrl("creditgate-webhooks-dlq");
  const topUpQueueUrl = sqs.queueUrl("creditgate-topups");
  const cfg = loadConfig(
    {
      TABLE_NAME: options.tableName,
      SQS_ENDPOINT: sqs.endpoint,
      AWS_REGION: "local",
      WEBHOOK_QUEUE_URL: queueUrl,
      WEBHOOK_DLQ_URL: dlqUrl,
      ...(options.endpoint ? { APP_WEBHOOK_URL: options.endpoint.url, APP_WEBHOOK_SECRET: options.endpoint.secret } : {}),
      WEBHOOK_RETRY_BASE_SECONDS: "1",
      WEBHOOK_TIMEOUT_SECONDS: "2",
      ...(options.topUps ? { TOPUP_QUEUE_URL: topUpQueueUrl } : {}),
      ...options.env,
    },
    "deliver",
  );
  const client = sqsClient(cfg);
  const consume = buildStreamConsumer(cfg, client);
  const deliver = buildDeliverer(buildDeliverDeps(cfg, client));
  const events = await startLocalEvents({
    dynamoEndpoint: inject("dynamoEndpoint"),
    tableName: options.tableName,
    consume: (event) => consume(event.Records as never),
    deliver: {
      sqs: client,
      queueUrl,
      workers: options.workers ?? 4,
      handler: async (event) => {
        const { keep } = await deliver(event.Records);
        return { batchItemFailures: keep.map((itemIdentifier) => ({ itemIdentifier })) };
      },
    },
    ...(options.topUps
      ? {
          topUp: {
            name: "auto top-up",
            sqs: client,
            queueUrl: topUpQueueUrl,
            workers: 1,
            handler: async (event) => {
              const { retry } = await runTopUpJobs(options.topUps as BillingDeps, event.Records);
              options.onTopUpJobsDone?.(event.Records.flatMap((record) => (retry.includes(record.messageId) ? [] : (jobOf(record.body) ?? []))));
              return { batchItemFailures: retry.map((itemIdentifier) => ({ itemIdentifier })) };
            },
          },
        }
      : {}),
    pollMs: 100,
  });
  const depth = async (url: string) => {
    const { Attributes } = await client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"] }));
    return Number(Attributes?.ApproximateNumberOfMessages ?? 0) + Number(Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0);
  };
  return {
    sqs,
    client,
    queueUrl,
    dlqUrl,
    events,
    depth,
    async stop() {
      await events.stop();
      client.destroy();
      await sqs.stop();
    },
  };
}

/** Waits until `check` holds, polling. */
export async function eventually(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((done) => setTimeout(done, 100));
  }
}
