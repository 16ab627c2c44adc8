import { createHash } from "node:crypto";
import { type Catalog, catalog as defaultCatalog } from "../catalog.js";
import { ownValue } from "../own-keys.js";
import type { LedgerEntry } from "../ledger/account.js";
import type { TopUpAttempt } from "../topup/model.js";
import type { AccountImage, EventPlace, GrantReason, TableChange, TopUpEventPlace, WebhookEvent } from "./model.js";
import { CHEAPEST_CALL, crossingsBetween, levelOf, lowThresholdOf } from "./thresholds.js";

/**
 * The events a batch of table changes means: a pure function of the changes, so a batch the
 * stream delivers again yields the same events with the same ids (the app recognises a
 * redelivery by the id; docs/webhooks.md). Ids are derived from the fact, never drawn:
 * a ledger entry's event from (user, entry seq), a payment failure from its time, a cancellation
 * from the subscription, an account transition from the stream record that carries it, a
 * top-up's outcome from (user, top-up seq).
 */

/** `evt_` and 32 hex digits of a SHA-256 of the fact's parts (a separator no part can forge: each is JSON). */
export function eventId(...parts: (string | number)[]): string {
  return `evt_${createHash("sha256").update(JSON.stringify(parts)).digest("hex").slice(0, 32)}`;
}

/** Ledger reasons that credit the user, as the event names them (`upgrade` is the upgrade top-up). */
const GRANT_REASONS: ReadonlyMap<string, GrantReason> = new Map([
  ["allowance", "allowance"],
  ["invoice", "invoice"],
  ["pack", "pack"],
  ["upgrade", "top_up"],
  ["admin", "admin"],
  ["reinstate", "reinstate"],
]);
const CLAWBACK_REASONS: ReadonlyMap<string, "refund" | "dispute"> = new Map([
  ["refund", "refund"],
  ["dispute", "dispute"],
]);

function entryEvents(change: Extract<TableChange, { kind: "entry" }>): WebhookEvent[] {
  const entry: LedgerEntry = change.entry;
  const place: EventPlace = { userId: entry.userId, seq: entry.seq, position: change.position, order: 0 };
  const timestamp = new Date(change.at).toISOString();
  const granted = GRANT_REASONS.get(entry.reason);
  if (granted && entry.amount > 0) {
    return [
      {
        id: eventId("credits.granted", entry.userId, entry.seq),
        type: "credits.granted",
        timestamp,
        data: { ...place, amount: entry.amount, reason: granted, balanceAfter: entry.balanceAfter, entryKey: entry.key },
      },
    ];
  }
  const clawedBack = CLAWBACK_REASONS.get(entry.reason);
  if (clawedBack && entry.amount < 0) {
    return [
      {
        id: eventId("credits.clawed_back", entry.userId, entry.seq),
        type: "credits.clawed_back",
        timestamp,
        data: { ...place, amount: -entry.amount, reason: clawedBack, balanceAfter: entry.balanceAfter, entryKey: entry.key },
      },
    ];
  }
  return [];
}

function accountEvents(change: Extract<TableChange, { kind: "account" }>, catalog: Catalog): WebhookEvent[] {
  const { before, after, position } = change;
  const at = { userId: after.userId, seq: after.seq, position };
  // each event of this one change gets the next `order`, so (seq, position, order) orders them all
  let order = 0;
  const place = (): EventPlace => ({ ...at, order: order++ });
  const timestamp = new Date(change.at).toISOString();
  const events: WebhookEvent[] = [];

  // A plan change comes first: the crossings after it are judged on the new plan's threshold.
  if (before && (before.plan !== after.plan || before.interval !== after.interval)) {
    events.push({
      id: eventId("plan.changed", after.userId, position),
      type: "plan.changed",
      timestamp,
      data: { ...place(), from: { plan: before.plan, interval: before.interval }, to: { plan: after.plan, interval: after.interval } },
    });
  }
  // A new account (no old image) starts from "ok": created already below a threshold is a crossing.
  const levelBefore = before ? levelOf(before.available, before.plan, catalog) : "ok";
  for (const type of crossingsBetween(levelBefore, levelOf(after.available, after.plan, catalog))) {
    const threshold = type === "credits.depleted" ? CHEAPEST_CALL : lowThresholdOf(after.plan, catalog);
    events.push({
      id: eventId(type, after.userId, position),
      type,
      timestamp,
      data: { ...place(), available: after.available, threshold, plan: after.plan },
    });
  }
  if (after.paymentFailedAt !== undefined && after.paymentFailedAt !== before?.paymentFailedAt) {
    events.push({
      id: eventId("subscription.payment_failed", after.userId, after.paymentFailedAt),
      type: "subscription.payment_failed",
      timestamp,
      data: { ...place(), subscriptionId: after.subscription?.id ?? null, failedAt: new Date(after.paymentFailedAt).toISOString() },
    });
  }
  // the current subscription canceled, or (one write) ended while another took its place: it is
  // then remembered in endedSubscriptions, never seen as `canceled` itself
  const replaced = before?.subscription && before.subscription.id !== after.subscription?.id ? before.subscription : undefined;
  const ended = [
    ...(after.subscription?.status === "canceled" && !wasCanceled(before, after.subscription.id) ? [after.subscription.id] : []),
    ...(replaced && replaced.status !== "canceled" && ownValue(after.endedSubscriptions, replaced.id) !== undefined ? [replaced.id] : []),
  ];
  for (const subscriptionId of ended) {
    events.push({
      id: eventId("subscription.canceled", after.userId, subscriptionId),
      type: "subscription.canceled",
      timestamp,
      data: { ...place(), subscriptionId },
    });
  }
  return events;
}

const wasCanceled = (before: AccountImage | undefined, subscriptionId: string): boolean =>
  before?.subscription?.id === subscriptionId && before.subscription.status === "canceled";

/** An attempt the write recorded: none before, another top-up's, or the same top-up's with a new outcome (action_required → succeeded). */
const isNewAttempt = (before: TopUpAttempt | undefined, after: TopUpAttempt): boolean =>
  before === undefined || before.seq !== after.seq || before.outcome !== after.outcome;

/**
 * The auto top-up item's transitions (lib/topup/rules.ts): an attempt's outcome recorded, and auto
 * top-up turned off by its failures. `seq` is the top-up's (the item does not hold the account's),
 * and ids are (type, user, top-up seq): a redelivered record, or the same outcome written again,
 * yields the same id. Settings, a top-up in flight, the month's count: no event.
 */
function topUpEvents(change: Extract<TableChange, { kind: "topup" }>): WebhookEvent[] {
  const { before, after, userId, position } = change;
  let order = 0;
  const place = (seq: number): TopUpEventPlace => ({ userId, seq, position, order: order++ });
  const timestamp = new Date(change.at).toISOString();
  const events: WebhookEvent[] = [];
  const attempt = after.lastAttempt;
  if (attempt && isNewAttempt(before?.lastAttempt, attempt)) {
    const invoiceId = attempt.invoiceId ?? null;
    const { seq, pack, outcome } = attempt;
    // pending (a payment still processing) tells nothing yet: its invoice.paid makes the success
    if (outcome === "succeeded") {
      events.push({ id: eventId("topup.succeeded", userId, seq), type: "topup.succeeded", timestamp, data: { ...place(seq), pack, invoiceId } });
    } else if (outcome === "action_required") {
      events.push({
        id: eventId("topup.action_required", userId, seq),
        type: "topup.action_required",
        timestamp,
        data: { ...place(seq), pack, invoiceId, actionUrl: attempt.actionUrl ?? null, failuresInARow: after.failuresInARow },
      });
    } else if (outcome === "declined" || outcome === "no_payment_method") {
      events.push({
        id: eventId("topup.failed", userId, seq),
        type: "topup.failed",
        timestamp,
        data: { ...place(seq), pack, outcome, invoiceId, failuresInARow: after.failuresInARow },
      });
    }
  }
  // turned off by the failures in the same write as the failure that reached the limit: after it
  if (before?.settings.enabled && !after.settings.enabled && after.disabledReason === "failures") {
    const seq = attempt?.seq ?? after.seq;
    events.push({
      id: eventId("topup.disabled", userId, seq),
      type: "topup.disabled",
      timestamp,
      data: { ...place(seq), reason: "failures", failuresInARow: after.failuresInARow },
    });
  }
  return events;
}

/** Every event of a batch of changes, in the batch's order (and within one change, the order they happened). */
export function deriveEvents(changes: readonly TableChange[], catalog: Catalog = defaultCatalog): WebhookEvent[] {
  return changes.flatMap((change) => {
    if (change.kind === "entry") return entryEvents(change);
    if (change.kind === "topup") return topUpEvents(change);
    return accountEvents(change, catalog);
  });
}
