import { ChangeMessageVisibilityCommand, type SQSClient, SendMessageBatchCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import type { WebhookEvent } from "./model.js";
import type { DeliveryQueue, EventQueue, QueuedDelivery } from "./queue.js";

/**
 * The queue ports on SQS (the deployed queues, or the local stand-in at SQS_ENDPOINT). A message's
 * body is the event's JSON exactly as it is posted; its attributes name the event for operators
 * (`ops webhooks failed`).
 */

const attributes = (event: Pick<WebhookEvent, "id" | "type">) => ({
  eventId: { DataType: "String", StringValue: event.id },
  eventType: { DataType: "String", StringValue: event.type },
});

/** SendMessageBatch takes 10 at most; a partly failed batch resends only what failed, a few times, then throws. */
export function sqsEventQueue(client: SQSClient, queueUrl: string): EventQueue {
  return {
    async enqueue(events) {
      for (let start = 0; start < events.length; start += 10) {
        let pending = events.slice(start, start + 10).map((event, index) => ({ Id: String(index), event }));
        for (let attempt = 1; pending.length > 0; attempt++) {
          const result = await client.send(
            new SendMessageBatchCommand({
              QueueUrl: queueUrl,
              Entries: pending.map(({ Id, event }) => ({ Id, MessageBody: JSON.stringify(event), MessageAttributes: attributes(event) })),
            }),
          );
          const failed = new Set((result.Failed ?? []).map((failure) => failure.Id));
          pending = pending.filter(({ Id }) => failed.has(Id));
          if (pending.length > 0 && attempt >= 5) throw new Error(`SQS refused ${pending.length} events: ${result.Failed?.[0]?.Message ?? "unknown"}`);
          if (pending.length > 0) await new Promise((done) => setTimeout(done, 50 * 2 ** attempt));
        }
      }
    },
  };
}

export function sqsDeliveryQueue(client: SQSClient, queueUrl: string, deadLetterQueueUrl: string): DeliveryQueue {
  return {
    async retryLater(delivery: QueuedDelivery, seconds: number) {
      await client.send(new ChangeMessageVisibilityCommand({ QueueUrl: queueUrl, ReceiptHandle: delivery.receiptHandle, VisibilityTimeout: seconds }));
    },
    async deadLetter(delivery: QueuedDelivery, lastError: string) {
      let event: Pick<WebhookEvent, "id" | "type"> = { id: "unknown", type: "credits.low" };
      try {
        event = JSON.parse(delivery.body) as WebhookEvent;
      } catch {
        // an unreadable body is dead-lettered as it is
      }
      await client.send(
        new SendMessageCommand({
          QueueUrl: deadLetterQueueUrl,
          MessageBody: delivery.body,
          MessageAttributes: {
            ...attributes(event),
            attempts: { DataType: "Number", StringValue: String(delivery.attempt) },
            queuedAt: { DataType: "Number", StringValue: String(delivery.queuedAt) },
            lastError: { DataType: "String", StringValue: lastError.slice(0, 500) || "unknown" },
          },
        }),
      );
    },
  };
}
