/**
 * A stand-in for SQS on 127.0.0.1, for `npm start` and the tests: it speaks the SQS JSON protocol
 * the AWS SDK uses (the same adapters, lib/events/sqs-queues.ts, and the same ops commands work on
 * it), and behaves like SQS where delivery depends on it: a received message is invisible for the
 * visibility timeout and comes back if not deleted; ChangeMessageVisibility reschedules it;
 * ApproximateReceiveCount counts receives; a message received more than maxReceiveCount times goes
 * to its dead-letter queue. In memory: queued messages do not survive a restart of `npm start`.
 */
import { createHash, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

interface StoredMessage {
  id: string;
  body: string;
  messageAttributes: Record<string, unknown> | undefined;
  sentAt: number;
  receiveCount: number;
  firstReceiveAt: number | undefined;
  visibleAt: number;
  receipt: string | undefined;
}

export interface LocalQueueDefinition {
  name: string;
  visibilityTimeoutSeconds?: number;
  redrive?: { deadLetterQueue: string; maxReceiveCount: number };
}

class LocalQueue {
  readonly messages = new Map<string, StoredMessage>();
  constructor(readonly definition: LocalQueueDefinition) {}

  send(body: string, messageAttributes: Record<string, unknown> | undefined, delaySeconds = 0): StoredMessage {
    const now = Date.now();
    const message: StoredMessage = { id: randomUUID(), body, messageAttributes, sentAt: now, receiveCount: 0, firstReceiveAt: undefined, visibleAt: now + delaySeconds * 1000, receipt: undefined };
    this.messages.set(message.id, message);
    return message;
  }

  byReceipt(receipt: unknown): StoredMessage | undefined {
    if (typeof receipt !== "string") return undefined;
    const [id] = receipt.split(":");
    const message = id === undefined ? undefined : this.messages.get(id);
    return message?.receipt === receipt ? message : undefined;
  }
}

class SqsError extends Error {
  constructor(readonly type: string, message: string) {
    super(message);
  }
}

const md5 = (text: string) => createHash("md5").update(text, "utf8").digest("hex");

export interface LocalSqs {
  endpoint: string;
  queueUrl(name: string): string;
  stop(): Promise<void>;
}

/** Starts the stand-in with these queues (a dead-letter queue is a queue of the list too). */
export async function startLocalSqs(options: { port?: number; queues: LocalQueueDefinition[] }): Promise<LocalSqs> {
  const queues = new Map<string, LocalQueue>(options.queues.map((definition) => [definition.name, new LocalQueue(definition)]));
  let endpoint = "";
  const queueUrl = (name: string) => `${endpoint}/000000000000/${name}`;
  const queueOf = (url: unknown): LocalQueue => {
    const name = typeof url === "string" ? url.split("/").pop() : undefined;
    const queue = name === undefined ? undefined : queues.get(name);
    if (!queue) throw new SqsError("QueueDoesNotExist", `The specified queue does not exist: ${String(url)}`);
    return queue;
  };

  /** Visible messages, oldest first; those past maxReceiveCount move to the dead-letter queue instead. */
  function receive(queue: LocalQueue, max: number, visibilitySeconds: number): StoredMessage[] {
    const now = Date.now();
    const taken: StoredMessage[] = [];
    for (const message of queue.messages.values()) {
      if (taken.length >= max) break;
      if (message.visibleAt > now) continue;
      const redrive = queue.definition.redrive;
      if (redrive && message.receiveCount >= redrive.maxReceiveCount) {
        queue.messages.delete(message.id);
        const deadLetter = queues.get(redrive.deadLetterQueue);
        deadLetter?.messages.set(message.id, { ...message, receipt: undefined, visibleAt: now });
        continue;
      }
      message.receiveCount += 1;
      message.firstReceiveAt ??= now;
      message.visibleAt = now + visibilitySeconds * 1000;
      message.receipt = `${message.id}:${randomUUID()}`;
      taken.push(message);
    }
    return taken;
  }

  const operations: Record<string, (input: Record<string, unknown>) => Promise<unknown> | unknown> = {
    GetQueueUrl: (input) => {
      queueOf(`/${String(input.QueueName)}`);
      return { QueueUrl: queueUrl(String(input.QueueName)) };
    },
    SendMessage: (input) => {
      const message = queueOf(input.QueueUrl).send(String(input.MessageBody), input.MessageAttributes as Record<string, unknown>, Number(input.DelaySeconds ?? 0));
      return { MessageId: message.id, MD5OfMessageBody: md5(message.body) };
    },
    SendMessageBatch: (input) => {
      const queue = queueOf(input.QueueUrl);
      const entries = (input.Entries as { Id: string; MessageBody: string; MessageAttributes?: Record<string, unknown>; DelaySeconds?: number }[]) ?? [];
      if (entries.length === 0 || entries.length > 10) throw new SqsError("TooManyEntriesInBatchRequest", "1 to 10 entries");
      return {
        Successful: entries.map((entry) => {
          const message = queue.send(entry.MessageBody, entry.MessageAttributes, entry.DelaySeconds ?? 0);
          return { Id: entry.Id, MessageId: message.id, MD5OfMessageBody: md5(message.body) };
        }),
        Failed: [],
      };
    },
    ReceiveMessage: async (input) => {
      const queue = queueOf(input.QueueUrl);
      const max = Math.min(10, Math.max(1, Number(input.MaxNumberOfMessages ?? 1)));
      const visibility = Number(input.VisibilityTimeout ?? queue.definition.visibilityTimeoutSeconds ?? 30);
      const waitUntil = Date.now() + Math.min(20, Number(input.WaitTimeSeconds ?? 0)) * 1000;
      let taken = receive(queue, max, visibility);
      while (taken.length === 0 && Date.now() < waitUntil && server.listening) {
        await new Promise((done) => setTimeout(done, 50));
        taken = receive(queue, max, visibility);
      }
      return {
        Messages: taken.map((message) => ({
          MessageId: message.id,
          ReceiptHandle: message.receipt,
          MD5OfBody: md5(message.body),
          Body: message.body,
          Attributes: {
            ApproximateReceiveCount: String(message.receiveCount),
            SentTimestamp: String(message.sentAt),
            ApproximateFirstReceiveTimestamp: String(message.firstReceiveAt),
          },
          ...(message.messageAttributes ? { MessageAttributes: message.messageAttributes } : {}),
        })),
      };
    },
    DeleteMessage: (input) => {
      const queue = queueOf(input.QueueUrl);
      const message = queue.byReceipt(input.ReceiptHandle);
      if (message) queue.messages.delete(message.id);
      return {};
    },
    DeleteMessageBatch: (input) => {
      const queue = queueOf(input.QueueUrl);
      const entries = (input.Entries as { Id: string; ReceiptHandle: string }[]) ?? [];
      for (const entry of entries) {
        const message = queue.byReceipt(entry.ReceiptHandle);
        if (message) queue.messages.delete(message.id);
      }
      return { Successful: entries.map((entry) => ({ Id: entry.Id })), Failed: [] };
    },
    ChangeMessageVisibility: (input) => {
      const queue = queueOf(input.QueueUrl);
      const message = queue.byReceipt(input.ReceiptHandle);
      const seconds = Number(input.VisibilityTimeout);
      if (!Number.isInteger(seconds) || seconds < 0 || seconds > 43_200) throw new SqsError("InvalidParameterValue", "VisibilityTimeout 0..43200");
      if (!message) throw new SqsError("ReceiptHandleIsInvalid", "The receipt handle is not valid");
      message.visibleAt = Date.now() + seconds * 1000;
      return {};
    },
    GetQueueAttributes: (input) => {
      const queue = queueOf(input.QueueUrl);
      const now = Date.now();
      const all = [...queue.messages.values()];
      return {
        Attributes: {
          ApproximateNumberOfMessages: String(all.filter((message) => message.visibleAt <= now).length),
          ApproximateNumberOfMessagesNotVisible: String(all.filter((message) => message.visibleAt > now).length),
        },
      };
    },
    PurgeQueue: (input) => {
      queueOf(input.QueueUrl).messages.clear();
      return {};
    },
  };

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const target = String(request.headers["x-amz-target"] ?? "");
    const operation = target.startsWith("AmazonSQS.") ? target.slice("AmazonSQS.".length) : "";
    const reply = (status: number, body: unknown) => {
      response.writeHead(status, { "content-type": "application/x-amz-json-1.0" });
      response.end(JSON.stringify(body));
    };
    try {
      const run = Object.hasOwn(operations, operation) ? operations[operation] : undefined;
      if (!run) throw new SqsError("UnsupportedOperation", `${operation || target} is not supported by the local stand-in`);
      const input = chunks.length > 0 ? (JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>) : {};
      reply(200, await run(input));
    } catch (error) {
      const type = error instanceof SqsError ? error.type : "InternalError";
      reply(error instanceof SqsError ? 400 : 500, { __type: `com.amazonaws.sqs#${type}`, message: (error as Error).message });
    }
  }

  const server: Server = createServer((request, response) => void handle(request, response));
  await new Promise<void>((resolveListen, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, "127.0.0.1", () => resolveListen());
  });
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    endpoint,
    queueUrl,
    stop: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}

/** The delivery queue and its dead-letter queue, as the stack makes them (infra/constructs/events.ts). */
export const LOCAL_WEBHOOK_QUEUES: LocalQueueDefinition[] = [
  { name: "creditgate-webhooks", visibilityTimeoutSeconds: 30, redrive: { deadLetterQueue: "creditgate-webhooks-dlq", maxReceiveCount: 60 } },
  { name: "creditgate-webhooks-dlq" },
  // auto top-up's jobs (lib/topup): a failed one comes back after 30 s, 10 times, then dead-letters
  { name: "creditgate-topups", visibilityTimeoutSeconds: 30, redrive: { deadLetterQueue: "creditgate-topups-dlq", maxReceiveCount: 10 } },
  { name: "creditgate-topups-dlq" },
];
