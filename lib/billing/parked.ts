import { logger } from "../logger.js";
import type { BillingDeps } from "./deps.js";
import { applyStripeEvent, isParkedOutcome, PARKED_PREFIX, type StripeEventEnvelope } from "./events.js";
import { BILLING_METRICS, countMetric } from "./metrics.js";
import type { ParkedEvent } from "./store.js";

/** Resolved and dismissed events are kept this long for the record, then TTL removes them; parked ones never expire. */
export const PARKED_EVENT_KEEP_SECONDS = 400 * 86_400;

/** The customer an event is about, when its object names one (`customer: "cus_…"` or an expanded customer). */
function customerOf(event: StripeEventEnvelope): string | undefined {
  const customer = (event.data.object as { customer?: unknown } | null)?.customer;
  const id = typeof customer === "string" ? customer : (customer as { id?: unknown } | null | undefined)?.id;
  return typeof id === "string" && id.startsWith("cus_") ? id : undefined;
}

/**
 * Writes an event that could not be applied as parked (durably, before the webhook answers), logs
 * it at ERROR and counts it (`ParkedStripeEvents`, by reason; alarmed in infra/stack.ts).
 */
export async function parkEvent(deps: BillingDeps, event: StripeEventEnvelope, payload: string, outcome: string): Promise<void> {
  const reason = outcome.slice(PARKED_PREFIX.length);
  const customer = customerOf(event);
  await deps.store.parkEvent({ eventId: event.id, type: event.type, reason, payload, ...(customer ? { customer } : {}) }, deps.ledger.now());
  logger.error("stripe event parked: it cannot be applied now", { eventId: event.id, type: event.type, reason });
  // once in total (what the alarm watches: CloudWatch alarms cannot sum across dimension values) and once by reason
  countMetric(BILLING_METRICS.parkedStripeEvents);
  countMetric(BILLING_METRICS.parkedStripeEvents, { reason });
}

export type ReplayResult =
  | { eventId: string; result: "resolved"; outcome: string }
  | { eventId: string; result: "still_parked"; reason: string }
  | { eventId: string; result: "not_parked"; status: ParkedEvent["status"] | "unknown" };

/**
 * Applies a parked event again through the same handler path as the webhook. Every effect is
 * idempotent, so replaying twice, or concurrently, or racing a redelivery, applies it once. An
 * event that now applies gets its receipt (a later redelivery answers `duplicate`) and is marked
 * resolved with its outcome; one that still cannot is parked again (attempts + 1).
 */
export async function replayParkedEvent(deps: BillingDeps, eventId: string): Promise<ReplayResult> {
  const parked = await deps.store.getParkedEvent(eventId);
  if (parked?.status !== "parked") return { eventId, result: "not_parked", status: parked?.status ?? "unknown" };
  const event = JSON.parse(parked.payload) as StripeEventEnvelope;
  const receipt = await deps.store.getReceipt(eventId);
  const outcome = receipt ? receipt.outcome : await applyStripeEvent(deps, event);
  if (isParkedOutcome(outcome)) {
    await parkEvent(deps, event, parked.payload, outcome);
    return { eventId, result: "still_parked", reason: outcome.slice(PARKED_PREFIX.length) };
  }
  const now = deps.ledger.now();
  if (!receipt) await deps.store.putReceipt({ eventId, type: event.type, outcome, receivedAt: now }, deps.receiptTtlSeconds);
  await deps.store.closeParkedEvent(eventId, { status: "resolved", outcome }, now, PARKED_EVENT_KEEP_SECONDS);
  logger.info("parked stripe event resolved", { eventId, type: event.type, outcome });
  return { eventId, result: "resolved", outcome };
}

/** Replays every event still parked, oldest first (or only those of one `reason`, or one customer). */
export async function replayParkedEvents(deps: BillingDeps, filter: { reason?: string; customer?: string } = {}): Promise<ReplayResult[]> {
  const parked = (await deps.store.listParkedEvents())
    .filter((event) => event.status === "parked")
    .filter((event) => filter.reason === undefined || event.reason === filter.reason)
    .filter((event) => filter.customer === undefined || event.customer === filter.customer)
    .sort((a, b) => a.firstSeenAt - b.firstSeenAt);
  const results: ReplayResult[] = [];
  for (const event of parked) results.push(await replayParkedEvent(deps, event.eventId));
  return results;
}

/** An operator's decision that a parked event will never apply: kept (with why), no longer parked. */
export async function dismissParkedEvent(deps: BillingDeps, eventId: string, reason: string): Promise<boolean> {
  const parked = await deps.store.getParkedEvent(eventId);
  if (parked?.status !== "parked") return false;
  await deps.store.closeParkedEvent(eventId, { status: "dismissed", dismissReason: reason }, deps.ledger.now(), PARKED_EVENT_KEEP_SECONDS);
  logger.warn("parked stripe event dismissed", { eventId, type: parked.type, reason });
  return true;
}
