import { marshall } from "@aws-sdk/util-dynamodb";
import { describe, expect, it } from "vitest";
import { deriveEvents, eventId } from "../../lib/events/derive.js";
import { type StreamRecordLike, tableChangesOf } from "../../lib/events/dynamo-stream-records.js";
import type { WebhookEvent } from "../../lib/events/model.js";
import { TOP_UP_SK } from "../../lib/topup/dynamo-topup-store.js";
import { type AutoTopUpSettings, type AutoTopUpState, TOP_UP_FAILURE_LIMIT } from "../../lib/topup/model.js";
import { afterCharge, afterPaid, begin, emptyState, noPaymentMethod, limitReached, withSettings } from "../../lib/topup/rules.js";
import { types } from "../helpers/table-changes.js";

/**
 * The topup.* webhooks, end to end through the pure part of the stream consumer: stream records
 * of the auto top-up item (as DynamoDB Streams hands them, NEW_AND_OLD_IMAGES, marshalled like
 * lib/topup/dynamo-topup-store.ts writes them) → tableChangesOf → deriveEvents. The states come
 * from lib/topup/rules.ts, so the walks are the transitions the code really writes.
 */

const NOW = Date.UTC(2026, 2, 10, 12);
const SETTINGS: AutoTopUpSettings = { enabled: true, threshold: 1_000, pack: "starter", monthlyLimit: 5 };
const CHARGE = { pack: "starter" as const, price: "price_starter", customer: "cus_1", paymentMethod: "pm_1", credits: 50_000 };

let nextPosition = 4_000_000_000_000_000_000n;
let nextCrossing = 9_000n;
const crossing = () => ({ userId: "u1", crossing: String(++nextCrossing) });

/** The item as the store writes it (`marshall(…, { removeUndefinedValues: true })`). */
const item = (userId: string, state: AutoTopUpState, version: number) =>
  marshall({ pk: `U#${userId}`, sk: TOP_UP_SK, userId, state, version }, { removeUndefinedValues: true });

/** One stream record of the auto top-up item: INSERT without a before, MODIFY with one. */
function topUpRecord(before: AutoTopUpState | undefined, after: AutoTopUpState, options: { userId?: string; position?: string } = {}): StreamRecordLike {
  const userId = options.userId ?? "u1";
  const position = options.position ?? String(++nextPosition);
  return {
    eventName: before ? "MODIFY" : "INSERT",
    dynamodb: {
      Keys: marshall({ pk: `U#${userId}`, sk: TOP_UP_SK }),
      ...(before ? { OldImage: item(userId, before, 1) } : {}),
      NewImage: item(userId, after, 2),
      SequenceNumber: position,
      ApproximateCreationDateTime: 1_773_144_000, // Lambda: epoch seconds
    },
  };
}

/** A walk of states → one record per step (the first an INSERT) → the events. */
function eventsOfWalk(states: AutoTopUpState[]): { events: WebhookEvent[]; records: StreamRecordLike[] } {
  const records = states.map((state, index) => topUpRecord(index === 0 ? undefined : states[index - 1], state));
  return { events: deriveEvents(tableChangesOf(records)), records };
}

const eventsOf = (before: AutoTopUpState | undefined, after: AutoTopUpState) => deriveEvents(tableChangesOf([topUpRecord(before, after)]));

const enabled = () => withSettings(undefined, SETTINGS, NOW);
/** The invoice id recorded on the top-up in flight (lib/topup/run.ts, before paying). */
const withInvoiceId = (state: AutoTopUpState, invoiceId: string): AutoTopUpState => ({
  ...state,
  inFlight: { ...(state.inFlight as NonNullable<AutoTopUpState["inFlight"]>), invoiceId },
});
/** A top-up begun from `state`: in flight, counted in the month, its crossing used. */
const begun = (state: AutoTopUpState) => begin(state, crossing(), { ...CHARGE, pack: state.settings.pack }, NOW + 1);

describe("stream records of the auto top-up item (tableChangesOf)", () => {
  it("become topup changes with the state before and after, the user and the record's place", () => {
    const first = enabled();
    const second = begun(first);
    const changes = tableChangesOf([topUpRecord(undefined, first, { position: "111" }), topUpRecord(first, second, { position: "112" })]);
    expect(changes).toEqual([
      { kind: "topup", position: "111", at: 1_773_144_000_000, userId: "u1", after: first },
      { kind: "topup", position: "112", at: 1_773_144_000_000, userId: "u1", before: first, after: second },
    ]);
  });

  it("skip a removed item and an item without a state, and leave the other items' changes as they were", () => {
    const state = enabled();
    const removed: StreamRecordLike = {
      eventName: "REMOVE",
      dynamodb: { Keys: marshall({ pk: "U#u1", sk: TOP_UP_SK }), OldImage: item("u1", state, 1), SequenceNumber: "201" },
    };
    const stateless: StreamRecordLike = {
      eventName: "INSERT",
      dynamodb: { Keys: marshall({ pk: "U#u1", sk: TOP_UP_SK }), NewImage: marshall({ pk: "U#u1", sk: TOP_UP_SK, userId: "u1", version: 1 }), SequenceNumber: "202" },
    };
    const account: StreamRecordLike = {
      eventName: "INSERT",
      dynamodb: {
        Keys: marshall({ pk: "U#u1", sk: "ACCOUNT" }),
        NewImage: marshall({ pk: "U#u1", sk: "ACCOUNT", userId: "u1", plan: "free", interval: "month", balance: 5, available: 5, seq: 3 }),
        SequenceNumber: "203",
      },
    };
    const changes = tableChangesOf([removed, stateless, account]);
    expect(changes.map((change) => [change.kind, change.position])).toEqual([["account", "203"]]);
  });

  it("read a user id that is a prototype name as an ordinary id", () => {
    const changes = tableChangesOf([topUpRecord(undefined, noPaymentMethod(enabled(), crossing(), NOW), { userId: "__proto__" })]);
    expect(changes).toMatchObject([{ kind: "topup", userId: "__proto__" }]);
    expect(deriveEvents(changes).map((event) => event.data.userId)).toEqual(["__proto__"]);
  });
});

describe("topup.* events (deriveEvents)", () => {
  it("a successful top-up: nothing while it is set up and in flight, topup.succeeded when its outcome is recorded", () => {
    const created = enabled();
    const changed = withSettings(created, { ...SETTINGS, threshold: 2_000, pack: "pro" }, NOW);
    const inFlight = begun(changed);
    const withInvoice = withInvoiceId(inFlight, "in_1");
    const succeeded = afterCharge(withInvoice, 1, { outcome: "succeeded", invoiceId: "in_1" }, NOW + 2);
    const { events, records } = eventsOfWalk([created, changed, inFlight, withInvoice, succeeded]);
    expect(types(events)).toEqual(["topup.succeeded"]);
    expect(events[0]).toEqual({
      id: eventId("topup.succeeded", "u1", 1),
      type: "topup.succeeded",
      timestamp: new Date(1_773_144_000_000).toISOString(),
      data: { userId: "u1", seq: 1, position: records[4]?.dynamodb?.SequenceNumber, order: 0, pack: "pro", invoiceId: "in_1" },
    });
  });

  it("a declined card: topup.failed with the outcome, the invoice and the failures so far", () => {
    const inFlight = begun(enabled());
    const declined = afterCharge(inFlight, 1, { outcome: "declined", invoiceId: "in_9" }, NOW + 2);
    const events = eventsOf(inFlight, declined);
    expect(types(events)).toEqual(["topup.failed"]);
    expect(events[0]?.data).toEqual({ userId: "u1", seq: 1, position: expect.any(String), order: 0, pack: "starter", outcome: "declined", invoiceId: "in_9", failuresInARow: 1 });
  });

  it("no saved card: topup.failed, outcome no_payment_method, no invoice", () => {
    const state = enabled();
    const events = eventsOf(state, noPaymentMethod(state, crossing(), NOW));
    expect(types(events)).toEqual(["topup.failed"]);
    expect(events[0]?.data).toMatchObject({ seq: 1, outcome: "no_payment_method", invoiceId: null, failuresInARow: 1, pack: "starter" });
  });

  it("3-D Secure: topup.action_required with the page and the invoice; the customer's confirmation later is topup.succeeded of the same top-up", () => {
    const inFlight = begun(enabled());
    const needsCustomer = afterCharge(inFlight, 1, { outcome: "action_required", invoiceId: "in_3ds", actionUrl: "https://invoice.stripe.com/i/in_3ds" }, NOW + 2);
    const confirmed = afterPaid(needsCustomer, 1, "in_3ds", NOW + 3);
    const events = deriveEvents(tableChangesOf([topUpRecord(inFlight, needsCustomer), topUpRecord(needsCustomer, confirmed)]));
    expect(types(events)).toEqual(["topup.action_required", "topup.succeeded"]);
    expect(events[0]?.data).toMatchObject({ seq: 1, pack: "starter", invoiceId: "in_3ds", actionUrl: "https://invoice.stripe.com/i/in_3ds", failuresInARow: 1 });
    expect(events[1]?.data).toMatchObject({ seq: 1, invoiceId: "in_3ds" });
    expect(events[0]?.id).not.toBe(events[1]?.id);
  });

  it("an action_required attempt without a page carries actionUrl null", () => {
    const inFlight = begun(enabled());
    const events = eventsOf(inFlight, afterCharge(inFlight, 1, { outcome: "action_required", invoiceId: "in_4" }, NOW + 2));
    expect(events.map((event) => event.data)).toEqual([expect.objectContaining({ invoiceId: "in_4", actionUrl: null })]);
  });

  it(`the failure that reaches ${TOP_UP_FAILURE_LIMIT} in a row: its topup.failed, then topup.disabled at the same place`, () => {
    const states = [enabled()];
    for (let failure = 0; failure < TOP_UP_FAILURE_LIMIT; failure++) states.push(noPaymentMethod(states.at(-1) as AutoTopUpState, crossing(), NOW + failure));
    const { events, records } = eventsOfWalk(states);
    expect(types(events)).toEqual([...Array.from({ length: TOP_UP_FAILURE_LIMIT }, () => "topup.failed"), "topup.disabled"]);
    const [lastFailure, disabled] = events.slice(-2);
    const lastPosition = records.at(-1)?.dynamodb?.SequenceNumber;
    expect(lastFailure?.data).toMatchObject({ seq: TOP_UP_FAILURE_LIMIT, position: lastPosition, order: 0, failuresInARow: TOP_UP_FAILURE_LIMIT });
    expect(disabled).toEqual({
      id: eventId("topup.disabled", "u1", TOP_UP_FAILURE_LIMIT),
      type: "topup.disabled",
      timestamp: expect.any(String),
      data: { userId: "u1", seq: TOP_UP_FAILURE_LIMIT, position: lastPosition, order: 1, reason: "failures", failuresInARow: TOP_UP_FAILURE_LIMIT },
    });
  });

  it("an action_required that reaches the limit is followed by topup.disabled too", () => {
    let state = enabled();
    for (let failure = 1; failure < TOP_UP_FAILURE_LIMIT; failure++) state = noPaymentMethod(state, crossing(), NOW);
    const inFlight = begun(state);
    const events = eventsOf(inFlight, afterCharge(inFlight, inFlight.seq, { outcome: "action_required", invoiceId: "in_5", actionUrl: "https://pay/5" }, NOW + 2));
    expect(types(events)).toEqual(["topup.action_required", "topup.disabled"]);
    expect(events.map((event) => event.data.seq)).toEqual([TOP_UP_FAILURE_LIMIT, TOP_UP_FAILURE_LIMIT]);
  });

  it("no event for writes that record no outcome: settings, a top-up starting, its invoice, a used crossing, the month's count, being turned off or on", () => {
    const created = enabled();
    const succeededOnce = afterCharge(begun(created), 1, { outcome: "succeeded", invoiceId: "in_1" }, NOW + 2);
    const steps: [string, AutoTopUpState, AutoTopUpState][] = [
      ["settings changed", succeededOnce, withSettings(succeededOnce, { ...SETTINGS, monthlyLimit: 9, threshold: 50 }, NOW + 3)],
      ["a top-up in flight", succeededOnce, begun(succeededOnce)],
      ["its invoice recorded", begun(succeededOnce), withInvoiceId(begun(succeededOnce), "in_2")],
      ["a crossing used up by the month's limit", succeededOnce, limitReached(succeededOnce, "9999999", NOW + 3)],
      ["a new month's count", succeededOnce, { ...succeededOnce, month: "2026-04", startedThisMonth: 0, updatedAt: NOW + 4 }],
      ["turned off by the user", succeededOnce, withSettings(succeededOnce, { ...SETTINGS, enabled: false }, NOW + 3)],
      ["only updatedAt", succeededOnce, { ...succeededOnce, updatedAt: NOW + 5 }],
    ];
    for (const [what, before, after] of steps) {
      expect(before.lastAttempt).toEqual(after.lastAttempt); // the step keeps the attempt as it was
      expect(eventsOf(before, after), what).toEqual([]);
    }
    // a new item with no attempt yet
    expect(eventsOf(undefined, created)).toEqual([]);
  });

  it("turning auto top-up on again after the failures turned it off is no event, and its next failures start over", () => {
    let state = enabled();
    for (let failure = 0; failure < TOP_UP_FAILURE_LIMIT; failure++) state = noPaymentMethod(state, crossing(), NOW);
    const reenabled = withSettings(state, SETTINGS, NOW + 10);
    expect(eventsOf(state, reenabled)).toEqual([]);
    // another change of settings while off by failures is no second topup.disabled
    const stillOff = withSettings(state, { ...SETTINGS, enabled: false, threshold: 7 }, NOW + 10);
    expect(eventsOf(state, stillOff)).toEqual([]);
    const failedAgain = noPaymentMethod(reenabled, crossing(), NOW + 11);
    expect(eventsOf(reenabled, failedAgain).map((event) => [event.type, event.data.seq, "failuresInARow" in event.data ? event.data.failuresInARow : undefined])).toEqual([
      ["topup.failed", TOP_UP_FAILURE_LIMIT + 1, 1],
    ]);
  });

  it("a new item that already holds an outcome (no old image) reports it; topup.disabled needs the state it turned off from", () => {
    let state = enabled();
    for (let failure = 0; failure < TOP_UP_FAILURE_LIMIT; failure++) state = noPaymentMethod(state, crossing(), NOW);
    expect(types(eventsOf(undefined, state))).toEqual(["topup.failed"]);
  });
});

describe("topup.* ids", () => {
  const inFlight = begun(enabled());
  const succeeded = afterCharge(inFlight, 1, { outcome: "succeeded", invoiceId: "in_1" }, NOW + 2);

  it("the same record delivered twice yields the same events with the same ids", () => {
    const record = topUpRecord(inFlight, succeeded);
    const once = deriveEvents(tableChangesOf([record]));
    const again = deriveEvents(tableChangesOf([record, record]));
    expect(once).toHaveLength(1);
    expect(again).toEqual([...once, ...once]);
  });

  it("come from the fact (type, user, top-up seq), not from the record: the same outcome in another record keeps its id", () => {
    const first = deriveEvents(tableChangesOf([topUpRecord(inFlight, succeeded, { position: "500" })]));
    const elsewhere = deriveEvents(tableChangesOf([topUpRecord(inFlight, { ...succeeded, updatedAt: NOW + 9 }, { position: "501" })]));
    expect(elsewhere.map((event) => event.id)).toEqual(first.map((event) => event.id));
    expect(elsewhere[0]?.data.position).toBe("501");
    // another user's, or another top-up's: another id
    const otherUser = deriveEvents(tableChangesOf([topUpRecord(inFlight, succeeded, { userId: "u2" })]));
    const next = begun(succeeded);
    const secondTopUp = deriveEvents(tableChangesOf([topUpRecord(next, afterCharge(next, 2, { outcome: "succeeded", invoiceId: "in_2" }, NOW + 3))]));
    expect(new Set([first[0]?.id, otherUser[0]?.id, secondTopUp[0]?.id]).size).toBe(3);
    expect(secondTopUp[0]?.data.seq).toBe(2);
  });

  it("every event of a long walk has its own id, and one user's topup.* events sort by (seq, position, order) in the order they happened", () => {
    const states: AutoTopUpState[] = [emptyState(SETTINGS, NOW)];
    const push = (next: AutoTopUpState) => states.push(next);
    const last = () => states.at(-1) as AutoTopUpState;
    for (let round = 0; round < 3; round++) {
      push(begun(last()));
      push(afterCharge(last(), last().seq, { outcome: "succeeded", invoiceId: `in_ok_${round}` }, NOW + round));
      push(begun(last()));
      push(afterCharge(last(), last().seq, { outcome: "action_required", invoiceId: `in_3ds_${round}`, actionUrl: "https://pay" }, NOW + round));
      push(afterPaid(last(), last().seq, `in_3ds_${round}`, NOW + round));
      push(begun(last()));
      push(afterCharge(last(), last().seq, { outcome: "declined", invoiceId: `in_no_${round}` }, NOW + round));
    }
    // the declined one counts: TOP_UP_FAILURE_LIMIT − 1 more turn auto top-up off
    for (let failure = 1; failure < TOP_UP_FAILURE_LIMIT; failure++) push(noPaymentMethod(last(), crossing(), NOW));
    expect(last().settings.enabled).toBe(false);
    const { events } = eventsOfWalk(states);
    expect(types(events).slice(-2)).toEqual(["topup.failed", "topup.disabled"]);
    expect(events).toHaveLength(3 * 4 + (TOP_UP_FAILURE_LIMIT - 1) + 1);
    expect(new Set(events.map((event) => event.id)).size).toBe(events.length);
    const key = (event: WebhookEvent) => [event.data.seq, BigInt(event.data.position), event.data.order] as const;
    const sorted = [...events].sort((a, b) => {
      const [x, y] = [key(a), key(b)];
      return x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0) || x[2] - y[2];
    });
    expect(sorted).toEqual(events);
  });
});
