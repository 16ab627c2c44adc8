import type { Catalog } from "../catalog.js";
import { deriveEvents } from "./derive.js";
import type { TableChange, WebhookEvent } from "./model.js";
import type { EventQueue } from "./queue.js";

export interface PublishDeps {
  /** undefined: no endpoint is configured, so nothing is queued (nothing would ever take it off) */
  queue: EventQueue | undefined;
  catalog: Catalog;
}

/**
 * The stream consumer's use case: the events a batch of table changes means, handed to the
 * delivery queue. It never waits for the app: a slow or failing endpoint only slows the
 * deliverer. A queue failure throws, so the stream delivers the batch again; the events derived
 * again carry the same ids.
 */
export async function publishTableChanges(deps: PublishDeps, changes: readonly TableChange[]): Promise<{ events: WebhookEvent[]; queued: number }> {
  const events = deriveEvents(changes, deps.catalog);
  if (!deps.queue || events.length === 0) return { events, queued: 0 };
  await deps.queue.enqueue(events);
  return { events, queued: events.length };
}
