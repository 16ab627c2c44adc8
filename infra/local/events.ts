/**
 * Outgoing webhooks on one machine (`npm start`, the tests): what Lambda's event source mappings
 * do when deployed. A stream poller reads DynamoDB Local's change stream (it serves the Streams
 * API) shard by shard, in order, and hands each batch to the stream consumer's handler; a batch
 * it fails is handed again (after a pause) until it passes, so nothing is skipped. A queue poller
 * receives from the SQS stand-in (infra/local/sqs-local.ts), hands batches to the deliverer's
 * handler and deletes what it did not report as failed, as the SQS event source mapping does.
 */
import { DescribeTableCommand } from "@aws-sdk/client-dynamodb";
import {
  DescribeStreamCommand,
  DynamoDBStreamsClient,
  GetRecordsCommand,
  GetShardIteratorCommand,
  type GetRecordsCommandOutput,
  type _Record as StreamRecord,
} from "@aws-sdk/client-dynamodb-streams";
import { DeleteMessageBatchCommand, ReceiveMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { DynamoDBStreamEvent, SQSBatchResponse, SQSEvent } from "aws-lambda";
import { localDynamoClient } from "../../lib/dynamo/local-client.js";

/** A Lambda handler of the stream (functions/stream-consumer.ts) or of the queue (functions/webhook-deliverer.ts), or the same shape. */
export type StreamHandler = (event: DynamoDBStreamEvent) => Promise<unknown>;
export type QueueHandler = (event: SQSEvent) => Promise<SQSBatchResponse | undefined>;

/** `{}` (no type) → `{ M: {} }`, at any depth (see asLambdaRecord). */
function withEmptyMaps(image: Record<string, unknown>): Record<string, unknown> {
  const fix = (value: unknown): unknown => {
    if (typeof value !== "object" || value === null) return value;
    const attribute = value as { M?: Record<string, unknown>; L?: unknown[] };
    if (Object.keys(attribute).length === 0) return { M: {} };
    if (attribute.M) return { M: withEmptyMaps(attribute.M) };
    if (attribute.L) return { L: attribute.L.map(fix) };
    return value;
  };
  const fixed: Record<string, unknown> = Object.create(null);
  for (const [name, value] of Object.entries(image)) fixed[name] = fix(value);
  return fixed;
}

const pause = (ms: number) => new Promise((done) => setTimeout(done, ms));

export interface LocalEventsOptions {
  dynamoEndpoint: string;
  tableName: string;
  consume: StreamHandler;
  /** unset: no deliverer (nothing is queued without an endpoint either) */
  deliver?: LocalQueueConsumer;
  /** unset: no auto top-up (functions/auto-topup.ts on its queue) */
  topUp?: LocalQueueConsumer;
  /** "now": only changes after the start (npm start); "oldest": everything the stream still holds */
  from?: "now" | "oldest";
  /** stream records per batch, as the event source mapping's batch size */
  batchSize?: number;
  pollMs?: number;
  onError?: (what: string, error: unknown) => void;
}

/** A queue and the handler its event source mapping would invoke. */
export interface LocalQueueConsumer {
  handler: QueueHandler;
  sqs: SQSClient;
  queueUrl: string;
  workers?: number;
  /** named in the errors it logs */
  name?: string;
}

export interface LocalEvents {
  stop(): Promise<void>;
  /** resolves when the stream poller has read everything written before this call */
  caughtUp(): Promise<void>;
}

interface ShardReader {
  iterator: string | undefined;
  lastSequence: string | undefined;
  closed: boolean;
}

export async function startLocalEvents(options: LocalEventsOptions): Promise<LocalEvents> {
  const pollMs = options.pollMs ?? 200;
  const onError = options.onError ?? ((what, error) => console.error(`creditgate: ${what}`, error));
  const dynamo = localDynamoClient(options.dynamoEndpoint);
  const streams = new DynamoDBStreamsClient({ endpoint: options.dynamoEndpoint, region: "local", credentials: { accessKeyId: "local", secretAccessKey: "local" } });
  const table = await dynamo.send(new DescribeTableCommand({ TableName: options.tableName }));
  const streamArn = table.Table?.LatestStreamArn;
  if (!streamArn) throw new Error(`table ${options.tableName} has no stream (lib/ledger/create-table.ts enables it)`);

  let running = true;
  const shards = new Map<string, ShardReader>();
  let rounds = 0;

  async function iteratorFor(shardId: string, reader: ShardReader, fresh: boolean): Promise<string | undefined> {
    const type = reader.lastSequence ? "AFTER_SEQUENCE_NUMBER" : fresh && options.from !== "oldest" ? "LATEST" : "TRIM_HORIZON";
    const result = await streams.send(
      new GetShardIteratorCommand({ StreamArn: streamArn, ShardId: shardId, ShardIteratorType: type, ...(reader.lastSequence ? { SequenceNumber: reader.lastSequence } : {}) }),
    );
    return result.ShardIterator;
  }

  async function discoverShards(first: boolean): Promise<void> {
    let exclusiveStartShardId: string | undefined;
    do {
      const described = await streams.send(new DescribeStreamCommand({ StreamArn: streamArn, ...(exclusiveStartShardId ? { ExclusiveStartShardId: exclusiveStartShardId } : {}) }));
      for (const shard of described.StreamDescription?.Shards ?? []) {
        const id = shard.ShardId;
        if (!id || shards.has(id)) continue;
        const reader: ShardReader = { iterator: undefined, lastSequence: undefined, closed: false };
        // shards open at start: from now; a shard that appears later holds only new changes: all of it
        reader.iterator = await iteratorFor(id, reader, first);
        shards.set(id, reader);
      }
      exclusiveStartShardId = described.StreamDescription?.LastEvaluatedShardId;
    } while (exclusiveStartShardId);
  }

  /**
   * A record as Lambda hands it: the creation time in epoch seconds (the Streams API: a Date), and
   * empty maps as `{ M: {} }` — the Streams client (3.1141) reads `{"M":{}}` as `{}`, a value of no type.
   */
  const asLambdaRecord = (record: StreamRecord) => ({
    ...record,
    dynamodb: {
      ...record.dynamodb,
      ...(record.dynamodb?.NewImage ? { NewImage: withEmptyMaps(record.dynamodb.NewImage) } : {}),
      ...(record.dynamodb?.OldImage ? { OldImage: withEmptyMaps(record.dynamodb.OldImage) } : {}),
      ApproximateCreationDateTime: (record.dynamodb?.ApproximateCreationDateTime?.getTime() ?? Date.now()) / 1000,
    },
  });

  async function readShard(id: string, reader: ShardReader): Promise<void> {
    if (!reader.iterator) {
      reader.closed = true;
      return;
    }
    let result: GetRecordsCommandOutput;
    try {
      result = await streams.send(new GetRecordsCommand({ ShardIterator: reader.iterator, Limit: options.batchSize ?? 100 }));
    } catch (error) {
      if ((error as Error).name === "ExpiredIteratorException" || (error as Error).name === "TrimmedDataAccessException") {
        reader.iterator = await iteratorFor(id, reader, false);
        return;
      }
      throw error;
    }
    const records = result.Records ?? [];
    if (records.length > 0) {
      // a failed batch is handed again until it passes: the position advances only after it
      for (;;) {
        try {
          await options.consume({ Records: records.map(asLambdaRecord) } as unknown as DynamoDBStreamEvent);
          break;
        } catch (error) {
          onError("stream consumer failed; retrying the batch", error);
          if (!running) return;
          await pause(1_000);
        }
      }
      reader.lastSequence = records.at(-1)?.dynamodb?.SequenceNumber ?? reader.lastSequence;
    }
    reader.iterator = result.NextShardIterator;
    if (!reader.iterator) reader.closed = true;
  }

  await discoverShards(true);
  const streamLoop = (async () => {
    let lastDiscovery = Date.now();
    while (running) {
      try {
        if (Date.now() - lastDiscovery > 1_000) {
          await discoverShards(false);
          lastDiscovery = Date.now();
        }
        for (const [id, reader] of shards) if (!reader.closed) await readShard(id, reader);
        rounds += 1;
      } catch (error) {
        if (running) onError("stream poller failed", error);
      }
      await pause(pollMs);
    }
  })();

  const workers: Promise<void>[] = [];
  for (const consumer of [options.deliver, options.topUp]) {
    if (!consumer) continue;
    const name = consumer.name ?? "queue consumer";
    for (let worker = 0; worker < (consumer.workers ?? 4); worker++) {
      workers.push(
        (async () => {
          while (running) {
            try {
              const received = await consumer.sqs.send(
                new ReceiveMessageCommand({ QueueUrl: consumer.queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageSystemAttributeNames: ["All"], MessageAttributeNames: ["All"] }),
              );
              const messages = received.Messages ?? [];
              if (messages.length === 0) continue;
              const event = {
                Records: messages.map((message) => ({
                  messageId: message.MessageId,
                  receiptHandle: message.ReceiptHandle,
                  body: message.Body,
                  attributes: message.Attributes ?? {},
                  messageAttributes: message.MessageAttributes ?? {},
                  eventSource: "aws:sqs",
                })),
              } as unknown as SQSEvent;
              let keep: Set<string>;
              try {
                const response = await consumer.handler(event);
                keep = new Set((response?.batchItemFailures ?? []).map((failure) => failure.itemIdentifier));
              } catch (error) {
                // a thrown invocation keeps the whole batch: it comes back after the visibility timeout
                onError(`${name} failed`, error);
                continue;
              }
              const done = messages.filter((message) => !keep.has(message.MessageId ?? ""));
              if (done.length > 0) {
                await consumer.sqs.send(
                  new DeleteMessageBatchCommand({ QueueUrl: consumer.queueUrl, Entries: done.map((message, index) => ({ Id: String(index), ReceiptHandle: message.ReceiptHandle })) }),
                );
              }
            } catch (error) {
              if (running) onError(`${name}'s queue poller failed`, error);
              await pause(500);
            }
          }
        })(),
      );
    }
  }

  return {
    async caughtUp() {
      const target = rounds + 2;
      while (running && rounds < target) await pause(pollMs / 2);
    },
    async stop() {
      running = false;
      await Promise.all([streamLoop, ...workers]);
      dynamo.destroy();
      streams.destroy();
    },
  };
}
