import { logger } from "../logger.js";
import type { BillingDeps } from "./deps.js";
import { applyStripeEvent, isParkedOutcome, PARKED_PREFIX, type StripeEventEnvelope } from "./events.js";
import { countMetric } from "../metrics.js";
import { BILLING_METRICS } from "./metrics.js";
import type { ParkedEvent } from "./model.js";

/** Resolved and dismissed events are kept this long for the record, then TTL removes them; parked ones never expire. */
export const PARKED_EVENT_KEEP_SECONDS = 400 * 86_400;

/** The customer an event is about, when its object names one (`customer: "cus_…"` or an expanded customer). */
function customerOf(event: StripeEventEnvelope): string | undefined {
  const customer = (event.data.object as { customer?: unknown } | null)?.customer;
  const id = typeof customer === "string" ? customer : (customer as { id?: unknown } | null | undefined)?.id;
  return typeof id === "string" && id.startsWith("cus_") ? id : undefined;
}

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;

/**
 * How the sweep retries a parked event, by its reason: first `firstMs` after it parked, then twice
 * as late after each attempt, never more than `capMs` apart. Every retry is a replay (idempotent),
 * so retrying one that cannot apply yet costs a read and, at most, one Stripe call.
 *
 * - unknown_customer, subscription_unavailable: the cause goes away by itself (a checkout
 *   completion maps the customer, Stripe answers again); 5 minutes, doubling, capped at 6 hours.
 * - unknown_price, unknown_pack: a configuration fix and a redeploy (or a restart of `npm start`)
 *   makes them apply; no one should have to remember the replay. 1 hour, doubling, capped at 24
 *   hours. A pack session that names no pack at all never applies: an operator dismisses it.
 * - malformed_object (and any reason not listed): not retried. The same bytes through the same
 *   parser give the same answer; only a release with a new parser changes it, and whoever ships
 *   it replays them (`npm run ops -- events replay --all --reason malformed_object`).
 */
export const PARKED_RETRY_BACKOFF: Readonly<Record<string, { firstMs: number; capMs: number }>> = {
  unknown_customer: { firstMs: 5 * MINUTE_MS, capMs: 6 * HOUR_MS },
  subscription_unavailable: { firstMs: 5 * MINUTE_MS, capMs: 6 * HOUR_MS },
  unknown_price: { firstMs: HOUR_MS, capMs: 24 * HOUR_MS },
  unknown_pack: { firstMs: HOUR_MS, capMs: 24 * HOUR_MS },
};

/** When the sweep retries an event parked for `reason` after its `attempts`-th attempt (≥ 1), or undefined: never. */
export function nextParkedAttemptAt(reason: string, attempts: number, now: number): number | undefined {
  const backoff = PARKED_RETRY_BACKOFF[reason];
  if (!backoff) return undefined;
  // 2^(attempts-1), bounded before it can overflow: the cap is reached long before
  const delay = backoff.firstMs * 2 ** Math.min(Math.max(attempts, 1) - 1, 30);
  return now + Math.min(delay, backoff.capMs);
}

/**
 * Writes an event that could not be applied as parked (durably, before the webhook answers), with
 * when the sweep retries it (PARKED_RETRY_BACKOFF). Parked by the webhook (a first delivery or
 * Stripe's redelivery) it logs at ERROR and counts (`ParkedStripeEvents`, by reason; alarmed in
 * infra/constructs/alarms.ts); parked again by a replay that still cannot apply it (`replayed`), it logs at
 * WARN and counts nothing: no new event was parked, and the alarm already told someone.
 */
export async function parkEvent(
  deps: BillingDeps,
  event: StripeEventEnvelope,
  payload: string,
  outcome: string,
  options: { previousAttempts?: number; replayed?: boolean } = {},
): Promise<void> {
  const reason = outcome.slice(PARKED_PREFIX.length);
  const customer = customerOf(event);
  const now = deps.ledger.now();
  const previousAttempts = options.previousAttempts ?? (await deps.store.getParkedEvent(event.id))?.attempts ?? 0;
  const nextAttemptAt = nextParkedAttemptAt(reason, previousAttempts + 1, now);
  await deps.store.parkEvent(
    { eventId: event.id, type: event.type, reason, payload, ...(customer ? { customer } : {}), ...(nextAttemptAt === undefined ? {} : { nextAttemptAt }) },
    now,
  );
  const details = { eventId: event.id, type: event.type, reason, attempts: previousAttempts + 1, nextAttemptAt };
  if (options.replayed) {
    logger.warn("parked stripe event still cannot be applied", details);
    return;
  }
  logger.error("stripe event parked: it cannot be applied now", details);
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
 * resolved with its outcome; one that still cannot is parked again (attempts + 1, its next
 * attempt pushed back).
 */
export async function replayParkedEvent(deps: BillingDeps, eventId: string): Promise<ReplayResult> {
  const parked = await deps.store.getParkedEvent(eventId);
  if (parked?.status !== "parked") return { eventId, result: "not_parked", status: parked?.status ?? "unknown" };
  const event = JSON.parse(parked.payload) as StripeEventEnvelope;
  const receipt = await deps.store.getReceipt(eventId);
  const outcome = receipt ? receipt.outcome : await applyStripeEvent(deps, event);
  if (isParkedOutcome(outcome)) {
    await parkEvent(deps, event, parked.payload, outcome, { previousAttempts: parked.attempts, replayed: true });
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

/** What one sweep run's retry of parked events did. */
export interface ParkedRetrySummary {
  /** due events the run tried (at most its limit) */
  retried: number;
  resolved: number;
  stillParked: number;
  /** the replay threw (e.g. Stripe or DynamoDB failing): its next attempt is pushed back all the same */
  failed: number;
}

/**
 * The sweep's automatic retry: replays the parked events whose next attempt is due (the longest
 * due first), at most `limit` per run so a pile of parked events never eats a run's time budget
 * (the rest stays due for the next run), and none once `stop()` says the run is out of time.
 * Each retry is `replayParkedEvent`, so racing an operator's replay, the webhook's automatic
 * replay or Stripe's redelivery still applies the event once.
 */
export async function retryDueParkedEvents(
  deps: BillingDeps,
  options: { limit: number; stop?: () => boolean },
): Promise<ParkedRetrySummary> {
  const summary: ParkedRetrySummary = { retried: 0, resolved: 0, stillParked: 0, failed: 0 };
  if (options.limit <= 0) return summary;
  const due = await deps.store.dueParkedEvents(deps.ledger.now(), options.limit);
  for (const parked of due) {
    if (options.stop?.()) break;
    summary.retried += 1;
    try {
      const result = await replayParkedEvent(deps, parked.eventId);
      if (result.result === "resolved") summary.resolved += 1;
      else if (result.result === "still_parked") summary.stillParked += 1;
      // not_parked: resolved or dismissed meanwhile (an operator, the missing fact arriving)
    } catch (error) {
      summary.failed += 1;
      logger.error("parked stripe event retry failed", { eventId: parked.eventId, type: parked.type, reason: parked.reason, error: error as Error });
      try {
        // one that keeps failing must not come first in every run: its next attempt moves on too
        const event = JSON.parse(parked.payload) as StripeEventEnvelope;
        await parkEvent(deps, event, parked.payload, `${PARKED_PREFIX}${parked.reason}`, { previousAttempts: parked.attempts, replayed: true });
      } catch {
        // still due next run; the error is logged above
      }
    }
  }
  if (summary.retried > 0) logger.info("parked stripe events retried", { summary });
  return summary;
}

/** An operator's decision that a parked event will never apply: kept (with why), no longer parked. */
export async function dismissParkedEvent(deps: BillingDeps, eventId: string, reason: string): Promise<boolean> {
  const parked = await deps.store.getParkedEvent(eventId);
  if (parked?.status !== "parked") return false;
  await deps.store.closeParkedEvent(eventId, { status: "dismissed", dismissReason: reason }, deps.ledger.now(), PARKED_EVENT_KEEP_SECONDS);
  logger.warn("parked stripe event dismissed", { eventId, type: parked.type, reason });
  return true;
}
