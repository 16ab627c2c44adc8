/**
 * `npm run ops -- webhooks …`: the outgoing webhooks' dead-letter queue and the endpoint.
 *
 *   webhooks failed [--limit N]           what is in the DLQ, one line per event (left in place)
 *   webhooks redrive <evt_…> | --all      back to the delivery queue: delivered again, same ids
 *   webhooks send-test                    one signed `webhook.test` event to APP_WEBHOOK_URL, now
 *
 * Queues: WEBHOOK_QUEUE_URL and WEBHOOK_DLQ_URL (the stack's WebhookQueueUrl and WebhookDlqUrl
 * outputs), at SQS_ENDPOINT; by default the local stand-in `npm start` runs (http://127.0.0.1:9324).
 * For a deployed stack: SQS_ENDPOINT= and the two URLs, with normal AWS credentials.
 */
import { randomUUID } from "node:crypto";
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageCommand,
  type Message,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from "@aws-sdk/client-sqs";
import { AppError } from "../../lib/errors.js";
import { attemptDelivery } from "../../lib/events/deliver.js";
import { TEST_EVENT_TYPE } from "../../lib/events/model.js";
import { fetchPost, sqsClient } from "../../lib/events/runtime.js";
import type { OpsIo } from "./io.js";

const LOCAL_SQS = "http://127.0.0.1:9324";

export interface WebhookQueues {
  client: SQSClient;
  queueUrl: string;
  dlqUrl: string;
}

export function webhookQueuesFromEnv(env: NodeJS.ProcessEnv): WebhookQueues {
  const endpoint = env.SQS_ENDPOINT ?? LOCAL_SQS;
  const client = sqsClient({ SQS_ENDPOINT: endpoint || undefined, AWS_REGION: env.AWS_REGION || (endpoint ? "local" : undefined) });
  return {
    client,
    queueUrl: env.WEBHOOK_QUEUE_URL || `${endpoint || LOCAL_SQS}/000000000000/creditgate-webhooks`,
    dlqUrl: env.WEBHOOK_DLQ_URL || `${endpoint || LOCAL_SQS}/000000000000/creditgate-webhooks-dlq`,
  };
}

/** Seconds a listed message stays hidden while the listing pages through the queue; made visible again at the end. */
const LISTING_SECONDS = 30;

/**
 * Every message of the DLQ (up to `limit`), each received once: a received message is hidden
 * while the listing goes on (so paging reaches the rest), then `after` decides its fate.
 */
async function eachDeadLetter(queues: WebhookQueues, limit: number, after: (message: Message) => Promise<"keep" | "done">): Promise<number> {
  let seen = 0;
  const keep: Message[] = [];
  try {
    while (seen < limit) {
      const { Messages = [] } = await queues.client.send(
        new ReceiveMessageCommand({
          QueueUrl: queues.dlqUrl,
          MaxNumberOfMessages: Math.min(10, limit - seen),
          VisibilityTimeout: LISTING_SECONDS,
          WaitTimeSeconds: 0,
          MessageSystemAttributeNames: ["All"],
          MessageAttributeNames: ["All"],
        }),
      );
      if (Messages.length === 0) break;
      for (const message of Messages) {
        seen += 1;
        if ((await after(message)) === "keep") keep.push(message);
      }
    }
  } finally {
    // what stays is visible again at once, not after the listing's timeout
    for (const message of keep) {
      await queues.client.send(new ChangeMessageVisibilityCommand({ QueueUrl: queues.dlqUrl, ReceiptHandle: message.ReceiptHandle, VisibilityTimeout: 0 })).catch(() => undefined);
    }
  }
  return seen;
}

interface DeadEvent {
  id: string;
  type: string;
  userId: string;
  seq: string;
}

function eventOf(message: Message): DeadEvent {
  try {
    const event = JSON.parse(message.Body ?? "") as { id?: string; type?: string; data?: { userId?: string; seq?: number } };
    return { id: event.id ?? "?", type: event.type ?? "?", userId: event.data?.userId ?? "?", seq: String(event.data?.seq ?? "?") };
  } catch {
    return { id: "?", type: "unreadable", userId: "?", seq: "?" };
  }
}

const attribute = (message: Message, name: string) => message.MessageAttributes?.[name]?.StringValue;

export async function runWebhooksCommand(
  args: { sub: string | undefined; eventId: string | undefined; all: boolean; limit: number },
  queues: WebhookQueues,
  env: NodeJS.ProcessEnv,
  io: OpsIo,
): Promise<number> {
  switch (args.sub) {
    case "failed": {
      const byType = new Map<string, number>();
      const count = await eachDeadLetter(queues, args.limit, async (message) => {
        const event = eventOf(message);
        byType.set(event.type, (byType.get(event.type) ?? 0) + 1);
        const queuedAt = Number(attribute(message, "queuedAt"));
        io.out(
          [
            event.id,
            event.type.padEnd(28),
            `user=${event.userId}`,
            `seq=${event.seq}`,
            `attempts=${attribute(message, "attempts") ?? message.Attributes?.ApproximateReceiveCount ?? "?"}`,
            Number.isFinite(queuedAt) ? `queued=${new Date(queuedAt).toISOString()}` : "",
            `last error: ${attribute(message, "lastError") ?? "(moved by SQS after too many receives)"}`,
          ]
            .filter(Boolean)
            .join("  "),
        );
        return "keep";
      });
      io.err(`${count} event(s) in the dead-letter queue${count ? `: ${[...byType].map(([type, n]) => `${type} ${n}`).join(", ")}` : ""}`);
      return 0;
    }
    case "redrive": {
      if (!args.all && !args.eventId) throw new AppError(400, "USAGE", "webhooks redrive <evt_…> | --all");
      let moved = 0;
      await eachDeadLetter(queues, Number.MAX_SAFE_INTEGER, async (message) => {
        const event = eventOf(message);
        if (!args.all && event.id !== args.eventId) return "keep";
        // sent first, deleted after: a crash in between delivers it twice (same id), never loses it
        await queues.client.send(
          new SendMessageCommand({
            QueueUrl: queues.queueUrl,
            MessageBody: message.Body ?? "",
            MessageAttributes: { eventId: { DataType: "String", StringValue: event.id }, eventType: { DataType: "String", StringValue: event.type } },
          }),
        );
        await queues.client.send(new DeleteMessageCommand({ QueueUrl: queues.dlqUrl, ReceiptHandle: message.ReceiptHandle }));
        moved += 1;
        io.out(`redriven ${event.id} (${event.type}, user ${event.userId})`);
        return "done";
      });
      if (!args.all && moved === 0) {
        io.err(`${args.eventId} is not in the dead-letter queue`);
        return 1;
      }
      io.err(`${moved} event(s) back on the delivery queue`);
      return 0;
    }
    case "send-test": {
      const url = env.APP_WEBHOOK_URL;
      const secret = env.APP_WEBHOOK_SECRET;
      if (!url || !secret) throw new AppError(400, "USAGE", "webhooks send-test needs APP_WEBHOOK_URL and APP_WEBHOOK_SECRET (whsec_…)");
      const now = Date.now();
      const event = { id: `evt_test_${randomUUID().replaceAll("-", "")}`, type: TEST_EVENT_TYPE, timestamp: new Date(now).toISOString(), data: { message: "creditgate test event" } };
      const outcome = await attemptDelivery({ post: fetchPost, timeoutMs: 10_000, now: () => now }, { url, secret }, JSON.stringify(event));
      if (outcome.delivered) {
        io.out(`${url} accepted ${event.id} (HTTP ${outcome.status})`);
        return 0;
      }
      io.err(`${url} did not accept ${event.id}: ${outcome.error}`);
      return 1;
    }
    default:
      throw new AppError(400, "USAGE", "webhooks failed [--limit N] | redrive <evt_…> | --all | send-test");
  }
}
