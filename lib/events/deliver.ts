import { Webhook } from "standardwebhooks";
import type { DeliveryQueue, QueuedDelivery } from "./queue.js";
import { nextRetry, type RetryPolicy } from "./retry.js";

/** The app's endpoint: where events are posted and the Standard Webhooks secret (`whsec_…`) they are signed with. */
export interface WebhookEndpoint {
  url: string;
  secret: string;
}

/** One HTTP POST; resolves with the status, rejects on a network error or the timeout. */
export type HttpPost = (url: string, headers: Record<string, string>, body: string, timeoutMs: number) => Promise<{ status: number }>;

export interface DeliverDeps {
  /** undefined: no endpoint configured; what is queued is dropped (and nothing new is queued) */
  endpoint: WebhookEndpoint | undefined;
  post: HttpPost;
  queue: DeliveryQueue;
  retry: RetryPolicy;
  timeoutMs: number;
  now: () => number;
  random: () => number;
}

/** The id of an event body (its `id`, also the webhook-id header); a body without one is refused. */
export function eventIdOf(body: string): string {
  const parsed: unknown = JSON.parse(body);
  const id = typeof parsed === "object" && parsed !== null ? (parsed as { id?: unknown }).id : undefined;
  if (typeof id !== "string" || id === "") throw new Error("queued event has no id");
  return id;
}

/**
 * The Standard Webhooks headers for one attempt: signed at send time, so a retry days later is
 * still inside the receiver's timestamp tolerance; the id stays the event's, so the receiver
 * recognises a redelivery.
 */
export function signedHeaders(endpoint: WebhookEndpoint, id: string, body: string, now: number): Record<string, string> {
  const at = new Date(now);
  return {
    "content-type": "application/json",
    "user-agent": "creditgate-webhooks/1",
    "webhook-id": id,
    "webhook-timestamp": String(Math.floor(now / 1000)),
    "webhook-signature": new Webhook(endpoint.secret).sign(id, at, body),
  };
}

export type AttemptOutcome = { delivered: true; status: number } | { delivered: false; error: string };

/** One signed POST; 2xx is delivered, anything else (status, timeout, network) is a failure to retry. */
export async function attemptDelivery(deps: Pick<DeliverDeps, "post" | "timeoutMs" | "now">, endpoint: WebhookEndpoint, body: string): Promise<AttemptOutcome> {
  try {
    const { status } = await deps.post(endpoint.url, signedHeaders(endpoint, eventIdOf(body), body, deps.now()), body, deps.timeoutMs);
    return status >= 200 && status < 300 ? { delivered: true, status } : { delivered: false, error: `HTTP ${status}` };
  } catch (error) {
    return { delivered: false, error: (error as Error).message ?? String(error) };
  }
}

export type DeliveryResult = "delivered" | "retrying" | "dead_lettered" | "dropped";

/**
 * The deliverer's use case for one queued event: post it; on failure wait (backoff with jitter)
 * and try again, for up to the policy's deadline, then dead-letter it. Resolves with what
 * happened; "retrying" means the message must stay on the queue (the caller reports it as a
 * batch item failure), everything else may be deleted.
 */
export async function deliverQueued(deps: DeliverDeps, delivery: QueuedDelivery): Promise<{ result: DeliveryResult; error?: string }> {
  if (!deps.endpoint) return { result: "dropped" };
  const outcome = await attemptDelivery(deps, deps.endpoint, delivery.body);
  if (outcome.delivered) return { result: "delivered" };
  const decision = nextRetry(deps.retry, delivery.attempt, delivery.queuedAt, deps.now(), deps.random());
  if ("giveUp" in decision) {
    await deps.queue.deadLetter(delivery, outcome.error);
    return { result: "dead_lettered", error: outcome.error };
  }
  await deps.queue.retryLater(delivery, decision.retryInSeconds);
  return { result: "retrying", error: outcome.error };
}

/** A batch, concurrently (one slow endpoint call does not hold the others back); the ids to keep on the queue. */
export async function deliverBatch(deps: DeliverDeps, deliveries: readonly QueuedDelivery[]): Promise<{ keep: string[]; results: DeliveryResult[] }> {
  // A queue call that fails (retryLater, deadLetter) leaves the message on the queue: it comes
  // back after its visibility timeout and is tried again, never lost.
  const results = await Promise.all(
    deliveries.map((delivery) => deliverQueued(deps, delivery).then(({ result }) => result, (): DeliveryResult => "retrying")),
  );
  return { keep: deliveries.filter((_, index) => results[index] === "retrying").map((delivery) => delivery.messageId), results };
}
