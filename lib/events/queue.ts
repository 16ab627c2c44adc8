import type { WebhookEvent } from "./model.js";

/**
 * The ports of webhook delivery: where the stream consumer hands events (a queue: SQS when
 * deployed, the local stand-in under `npm start` and in tests), and what the deliverer needs of
 * that queue for a message it could not deliver.
 */

/** Takes events for delivery; resolves once every one is durably queued (else it throws). */
export interface EventQueue {
  enqueue(events: readonly WebhookEvent[]): Promise<void>;
}

/** One queued delivery, as the deliverer receives it (an SQS message). */
export interface QueuedDelivery {
  messageId: string;
  receiptHandle: string;
  /** the event's JSON, exactly as it is posted */
  body: string;
  /** how many times it was received, this time included (SQS ApproximateReceiveCount) */
  attempt: number;
  /** when it was queued, epoch ms (SQS SentTimestamp; a message redriven from the dead-letter queue starts again) */
  queuedAt: number;
}

export interface DeliveryQueue {
  /** tries the message again in `seconds` (SQS ChangeMessageVisibility) */
  retryLater(delivery: QueuedDelivery, seconds: number): Promise<void>;
  /** gives up: the message goes to the dead-letter queue, with why */
  deadLetter(delivery: QueuedDelivery, lastError: string): Promise<void>;
}
