import { SQSClient } from "@aws-sdk/client-sqs";
import { catalog } from "../catalog.js";
import { type Config, config } from "../config.js";
import { loadSecretsIntoEnv } from "../secrets.js";
import { type DeliverDeps, type DeliveryResult, deliverBatch, type HttpPost } from "./deliver.js";
import { type StreamRecordLike, tableChangesOf } from "./dynamo-stream-records.js";
import type { WebhookEvent } from "./model.js";
import { publishTableChanges } from "./publish.js";
import type { QueuedDelivery } from "./queue.js";
import { DEFAULT_RETRY_POLICY } from "./retry.js";
import { sqsDeliveryQueue, sqsEventQueue } from "./sqs-queues.js";
import { sqsTopUpQueue } from "../topup/queue.js";

// The deliverer's signing secret arrives as APP_WEBHOOK_SECRET_ARN when deployed (lib/secrets.ts).
await loadSecretsIntoEnv();

/** SQS_ENDPOINT means the local stand-in (infra/local/sqs-local.ts): any region and credentials do. */
export function sqsClient(cfg: Pick<Config, "SQS_ENDPOINT" | "AWS_REGION">): SQSClient {
  if (!cfg.SQS_ENDPOINT) return new SQSClient({});
  return new SQSClient({ endpoint: cfg.SQS_ENDPOINT, region: cfg.AWS_REGION ?? "local", credentials: { accessKeyId: "local", secretAccessKey: "local" } });
}

/** fetch, with the timeout and without following redirects (an endpoint answers itself or fails). */
export const fetchPost: HttpPost = async (url, headers, body, timeoutMs) => {
  const response = await fetch(url, { method: "POST", headers, body, redirect: "manual", signal: AbortSignal.timeout(timeoutMs) });
  await response.body?.cancel();
  return { status: response.status };
};

export type StreamConsumer = (records: readonly StreamRecordLike[]) => Promise<{ events: WebhookEvent[]; queued: number }>;

/** The stream consumer: records → events → the delivery queue; without an endpoint nothing is queued. */
export function buildStreamConsumer(cfg: Config, client: SQSClient = sqsClient(cfg)): StreamConsumer {
  const queue = cfg.APP_WEBHOOK_URL && cfg.WEBHOOK_QUEUE_URL ? sqsEventQueue(client, cfg.WEBHOOK_QUEUE_URL) : undefined;
  const topUps = cfg.TOPUP_QUEUE_URL ? sqsTopUpQueue(client, cfg.TOPUP_QUEUE_URL) : undefined;
  return (records) => publishTableChanges({ queue, topUps, catalog }, tableChangesOf(records));
}

export function buildDeliverDeps(cfg: Config, client: SQSClient = sqsClient(cfg), post: HttpPost = fetchPost): DeliverDeps {
  const endpoint = cfg.APP_WEBHOOK_URL && cfg.APP_WEBHOOK_SECRET ? { url: cfg.APP_WEBHOOK_URL, secret: cfg.APP_WEBHOOK_SECRET } : undefined;
  return {
    endpoint,
    post,
    queue: sqsDeliveryQueue(client, cfg.WEBHOOK_QUEUE_URL ?? "", cfg.WEBHOOK_DLQ_URL ?? ""),
    retry: { ...DEFAULT_RETRY_POLICY, baseSeconds: cfg.WEBHOOK_RETRY_BASE_SECONDS, giveUpAfterMs: cfg.WEBHOOK_GIVE_UP_AFTER_SECONDS * 1000 },
    timeoutMs: cfg.WEBHOOK_TIMEOUT_SECONDS * 1000,
    now: Date.now,
    random: Math.random,
  };
}

/** An SQS message as the deliverer's event source mapping hands it (the fields it reads). */
export interface SqsMessageLike {
  messageId: string;
  receiptHandle: string;
  body: string;
  attributes: { ApproximateReceiveCount?: string; SentTimestamp?: string };
}

export const queuedDeliveryOf = (message: SqsMessageLike): QueuedDelivery => ({
  messageId: message.messageId,
  receiptHandle: message.receiptHandle,
  body: message.body,
  attempt: Number(message.attributes.ApproximateReceiveCount ?? 1),
  queuedAt: Number(message.attributes.SentTimestamp ?? Date.now()),
});

export type Deliverer = (messages: readonly SqsMessageLike[]) => Promise<{ keep: string[]; results: DeliveryResult[] }>;

export const buildDeliverer =
  (deps: DeliverDeps): Deliverer =>
  (messages) =>
    deliverBatch(deps, messages.map(queuedDeliveryOf));

let consumer: StreamConsumer | undefined;
let deliverer: Deliverer | undefined;

/** The container's consumer and deliverer, from the validated config (cold start). */
export const streamConsumer = (): StreamConsumer => (consumer ??= buildStreamConsumer(config("stream")));
export const webhookDeliverer = (): Deliverer => (deliverer ??= buildDeliverer(buildDeliverDeps(config("deliver"))));
