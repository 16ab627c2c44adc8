import type { Catalog } from "../catalog.js";
import { deriveEvents } from "./derive.js";
import type { TableChange, WebhookEvent } from "./model.js";
import type { EventQueue } from "./queue.js";
import { topUpJobsOf } from "../topup/jobs.js";
import type { TopUpQueue } from "../topup/queue.js";

export interface PublishDeps {
  /** undefined: no endpoint is configured, so nothing is queued (nothing would ever take it off) */
  queue: EventQueue | undefined;
  /** undefined: auto top-up is not deployed (no TOPUP_QUEUE_URL) */
  topUps?: TopUpQueue | undefined;
  catalog: Catalog;
}

/**
 * The stream consumer's use case: the events a batch of table changes means, handed to the
 * delivery queue. It never waits for the app: a slow or failing endpoint only slows the
 * deliverer. A queue failure throws, so the stream delivers the batch again; the events derived
 * again carry the same ids.
 */
export async function publishTableChanges(deps: PublishDeps, changes: readonly TableChange[]): Promise<{ events: WebhookEvent[]; queued: number }> {
  // auto top-up's crossings first: a top-up must not wait on (or be lost with) the app's endpoint
  const jobs = deps.topUps ? topUpJobsOf(changes) : [];
  if (jobs.length > 0) await deps.topUps?.enqueue(jobs);
  const events = deriveEvents(changes, deps.catalog);
  if (!deps.queue || events.length === 0) return { events, queued: 0 };
  await deps.queue.enqueue(events);
  return { events, queued: events.length };
}
