import {
  type AttributeValue,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  QueryCommand,
  type QueryCommandInput,
  UpdateItemCommand,
} from "@aws-sdk/client-dynamodb";
import { marshall } from "@aws-sdk/util-dynamodb";
import { readItem, storedMapKey } from "../dynamo/items.js";
import { accountKey } from "../ledger/table-definition.js";
import { type ClawFact, clawFactKey } from "./clawback.js";
import type { CheckoutKind, ClawRecord, ExtraSubscription, ParkedEvent, PendingCheckout, PurchaseRecord, WebhookReceipt } from "./model.js";
import type { BillingStore } from "./store.js";

/**
 * Billing's items in the single table (the ledger owns `U#…/ACCOUNT`'s credit fields and `E#…`):
 *
 * | pk            | sk         | what                                                        |
 * | ------------- | ---------- | ----------------------------------------------------------- |
 * | `U#<user>`    | `ACCOUNT`  | billing attributes only: stripeCustomerId, subscription,     |
 * |               |            | paymentFailedAt, lastPaidAt, pendingCheckout,               |
 * |               |            | pendingPackCheckout, extraSubscriptions,                    |
 * |               |            | endedSubscriptions (never balance, seq, holds, allowance…)  |
 * | `C#<cus_…>`   | `CUSTOMER` | customer → user, for webhooks                               |
 * | `EVT#<evt_…>` | `RECEIPT`  | webhook event applied (dedupe + audit), removed by TTL      |
 * | `PUR#<pi|in>` | `PURCHASE` | what a payment bought (refund and dispute basis)            |
 * | `PUR#<pi|in>` | `WAIT#<key>` | a refund/dispute that arrived before its purchase; TTL    |
 * | `CLAW#<ch_…>` | `CLAW`     | a charge's refunds, disputes, their reversals; fact keys   |
 *
 * Account updates are all conditioned on `attribute_exists(pk)`: billing never creates a partial
 * account item (the ledger creates accounts, with their signup entry).
 */
const customerKey = (customerId: string) => ({ pk: `C#${customerId}`, sk: "CUSTOMER" });
const receiptKey = (eventId: string) => ({ pk: `EVT#${eventId}`, sk: "RECEIPT" });
/** Parked events share one item collection: an operator lists them with one Query (they are few by design). */
const PARKED_PK = "STRIPE#PARKED";
const parkedKey = (eventId: string) => ({ pk: PARKED_PK, sk: eventId });
const purchaseKey = (id: string) => ({ pk: `PUR#${id}`, sk: "PURCHASE" });
/** The item of a charge's ClawRecord (not the ledger key of one of its facts: clawFactKey). */
const clawRecordKey = (chargeId: string) => ({ pk: `CLAW#${chargeId}`, sk: "CLAW" });

const MARKER_ATTRIBUTE: Record<CheckoutKind, string> = {
  subscription: "pendingCheckout",
  pack: "pendingPackCheckout",
};

const isConditionFailure = (error: unknown) => error instanceof ConditionalCheckFailedException;

function strip(item: Record<string, AttributeValue>): Record<string, unknown> {
  const { pk: _pk, sk: _sk, ttl: _ttl, ...rest } = readItem(item);
  return rest;
}

/**
 * The subscription state (`subscription`, `extraSubscriptions`, `endedSubscriptions`, written
 * only by the three methods below) is still at the revision the caller read, and the write bumps
 * it. This one condition covers every field of that state, so the writes need no other.
 */
function revisionGuard(rev: number): { condition: string; set: string; names: Record<string, string>; values: Record<string, unknown> } {
  return {
    condition: rev === 0 ? "attribute_not_exists(#rev)" : "#rev = :rev",
    set: "#rev = :nextRev",
    names: { "#rev": "subscriptionRev" },
    values: { ...(rev === 0 ? {} : { ":rev": rev }), ":nextRev": rev + 1 },
  };
}

export function createDynamoBillingStore(client: DynamoDBClient, tableName: string): BillingStore {
  async function get(key: Record<string, string>): Promise<Record<string, unknown> | undefined> {
    const { Item } = await client.send(new GetItemCommand({ TableName: tableName, Key: marshall(key), ConsistentRead: true }));
    return Item ? strip(Item) : undefined;
  }

  /** Every item of a query, page after page (consistent reads). */
  async function queryAll(input: Omit<QueryCommandInput, "TableName" | "ConsistentRead" | "ExclusiveStartKey">) {
    const items: Record<string, AttributeValue>[] = [];
    let startKey: Record<string, AttributeValue> | undefined;
    do {
      const page = await client.send(new QueryCommand({ ...input, TableName: tableName, ConsistentRead: true, ExclusiveStartKey: startKey }));
      items.push(...(page.Items ?? []));
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    return items;
  }

  /** A conditional account update; false when the condition did not hold (nothing written). */
  async function updateAccount(
    userId: string,
    update: string,
    condition: string,
    names: Record<string, string>,
    values?: Record<string, unknown>,
  ): Promise<{ ok: true } | { ok: false; old: Record<string, unknown> | undefined }> {
    try {
      await client.send(
        new UpdateItemCommand({
          TableName: tableName,
          Key: marshall(accountKey(userId)),
          UpdateExpression: update,
          ConditionExpression: condition,
          ExpressionAttributeNames: names,
          ...(values ? { ExpressionAttributeValues: marshall(values, { removeUndefinedValues: true }) } : {}),
          ReturnValuesOnConditionCheckFailure: "ALL_OLD",
        }),
      );
      return { ok: true };
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
      const item = (error as ConditionalCheckFailedException).Item;
      return { ok: false, old: item ? strip(item) : undefined };
    }
  }

  async function putNew(item: Record<string, unknown>): Promise<boolean> {
    try {
      await client.send(
        new PutItemCommand({
          TableName: tableName,
          Item: marshall(item, { removeUndefinedValues: true }),
          ConditionExpression: "attribute_not_exists(#pk)",
          ExpressionAttributeNames: { "#pk": "pk" },
        }),
      );
      return true;
    } catch (error) {
      if (isConditionFailure(error)) return false;
      throw error;
    }
  }

  /**
   * A conditional account update that SETs inside the named maps (alias → attribute). A nested
   * SET needs its map to exist, so a missing map is created (empty) and the update tried again.
   * False when the caller's condition did not hold.
   */
  async function updateInMaps(
    userId: string,
    maps: Record<string, string>,
    update: string,
    condition: string,
    names: Record<string, string>,
    values: Record<string, unknown>,
  ): Promise<boolean> {
    const aliases = Object.keys(maps);
    const full = [condition, ...aliases.map((alias) => `attribute_exists(${alias})`)].join(" AND ");
    for (let attempt = 0; attempt < 3; attempt++) {
      const result = await updateAccount(userId, update, full, { ...names, ...maps }, values);
      if (result.ok) return true;
      const old = result.old;
      if (!old) throw new Error(`account ${userId} does not exist`);
      const missing = Object.values(maps).filter((attribute) => old[attribute] === undefined);
      if (missing.length === 0) return false;
      const created = missing.map((attribute, index) => [`#m${index}`, attribute] as const);
      // if_not_exists: a concurrent creator may have added entries already; keep them.
      await updateAccount(
        userId,
        `SET ${created.map(([alias]) => `${alias} = if_not_exists(${alias}, :empty)`).join(", ")}`,
        "attribute_exists(#pk)",
        { "#pk": "pk", ...Object.fromEntries(created) },
        { ":empty": {} },
      );
    }
    return false;
  }

  return {
    async getCustomerUser(customerId) {
      const item = await get(customerKey(customerId));
      return typeof item?.userId === "string" ? item.userId : undefined;
    },

    async putCustomerUser(customerId, userId, now) {
      try {
        await client.send(
          new PutItemCommand({
            TableName: tableName,
            Item: marshall({ ...customerKey(customerId), customerId, userId, createdAt: now }),
            ConditionExpression: "attribute_not_exists(#pk) OR #userId = :userId",
            ExpressionAttributeNames: { "#pk": "pk", "#userId": "userId" },
            ExpressionAttributeValues: marshall({ ":userId": userId }),
          }),
        );
      } catch (error) {
        if (isConditionFailure(error)) throw new Error(`Stripe customer ${customerId} already belongs to another user`);
        throw error;
      }
    },

    async linkAccountCustomer(userId, customerId) {
      const result = await updateAccount(
        userId,
        "SET #c = :c",
        "attribute_exists(#pk) AND (attribute_not_exists(#c) OR #c = :c)",
        { "#pk": "pk", "#c": "stripeCustomerId" },
        { ":c": customerId },
      );
      if (result.ok) return customerId;
      const existing = result.old?.stripeCustomerId;
      if (typeof existing !== "string") throw new Error(`account ${userId} does not exist`);
      return existing;
    },

    async claimCheckout(userId, kind, marker, now) {
      const result = await updateAccount(
        userId,
        "SET #m = :marker",
        "attribute_exists(#pk) AND (attribute_not_exists(#m) OR #m.#exp < :now)",
        { "#pk": "pk", "#m": MARKER_ATTRIBUTE[kind], "#exp": "expiresAt" },
        { ":marker": marker, ":now": now },
      );
      if (result.ok) return { claimed: true };
      if (!result.old) throw new Error(`account ${userId} does not exist`);
      return { claimed: false, existing: result.old[MARKER_ATTRIBUTE[kind]] as PendingCheckout | undefined };
    },

    async recordCheckoutSession(userId, kind, nonce, session) {
      // Not recorded when the marker was meanwhile released or replaced: nothing left to point at.
      await updateAccount(
        userId,
        "SET #m.#sid = :sid, #m.#url = :url",
        "#m.#nonce = :nonce",
        { "#m": MARKER_ATTRIBUTE[kind], "#sid": "sessionId", "#url": "url", "#nonce": "nonce" },
        { ":sid": session.id, ":url": session.url, ":nonce": nonce },
      );
    },

    async releaseCheckout(userId, kind, match) {
      const byNonce = "nonce" in match;
      await updateAccount(
        userId,
        "REMOVE #m",
        "#m.#field = :value",
        { "#m": MARKER_ATTRIBUTE[kind], "#field": byNonce ? "nonce" : "sessionId" },
        { ":value": byNonce ? match.nonce : match.sessionId },
      );
    },

    async replaceSubscription(userId, next, rev, options = {}) {
      const guard = revisionGuard(rev);
      const names: Record<string, string> = { "#pk": "pk", "#sub": "subscription", ...guard.names };
      const values: Record<string, unknown> = { ":next": next, ...guard.values };
      const sets = ["#sub = :next", guard.set];
      const maps: Record<string, string> = {};
      if (options.ended) {
        // The replaced subscription's last state is remembered, so its late events are seen as stale.
        Object.assign(maps, { "#e": "endedSubscriptions" });
        Object.assign(names, { "#ended": storedMapKey(options.ended.id) });
        values[":endedAt"] = options.ended.lastEventAt;
        sets.push("#e.#ended = :endedAt");
      }
      if (options.fromExtra) Object.assign(names, { "#x": "extraSubscriptions", "#xs": storedMapKey(options.fromExtra) });
      const update = `SET ${sets.join(", ")}${options.fromExtra ? " REMOVE #x.#xs" : ""}`;
      return updateInMaps(userId, maps, update, `attribute_exists(#pk) AND ${guard.condition}`, names, values);
    },

    async putExtraSubscription(userId, subscriptionId, extra: ExtraSubscription, rev) {
      const guard = revisionGuard(rev);
      return updateInMaps(
        userId,
        { "#x": "extraSubscriptions" },
        `SET #x.#xs = :extra, ${guard.set}`,
        `attribute_exists(#pk) AND ${guard.condition}`,
        { "#pk": "pk", "#xs": storedMapKey(subscriptionId), ...guard.names },
        { ":extra": extra, ...guard.values },
      );
    },

    async endOtherSubscription(userId, subscriptionId, at, rev, wasExtra) {
      const guard = revisionGuard(rev);
      return updateInMaps(
        userId,
        { "#e": "endedSubscriptions" },
        `SET #e.#xs = :at, ${guard.set}${wasExtra ? " REMOVE #x.#xs" : ""}`,
        `attribute_exists(#pk) AND ${guard.condition}`,
        { "#pk": "pk", "#xs": storedMapKey(subscriptionId), ...(wasExtra ? { "#x": "extraSubscriptions" } : {}), ...guard.names },
        { ":at": at, ...guard.values },
      );
    },

    async markPaymentFailed(userId, at) {
      // Not when a payment at or after this failure is known: Stripe may deliver the two in any order.
      await updateAccount(
        userId,
        "SET #pf = :at",
        "attribute_exists(#pk) AND (attribute_not_exists(#pf) OR #pf < :at) AND (attribute_not_exists(#lp) OR #lp < :at)",
        { "#pk": "pk", "#pf": "paymentFailedAt", "#lp": "lastPaidAt" },
        { ":at": at },
      );
    },

    async clearPaymentFailed(userId, paidAt) {
      // First remember the payment (so a failure delivered late is not recorded), then clear an older mark.
      await updateAccount(
        userId,
        "SET #lp = :paid",
        "attribute_exists(#pk) AND (attribute_not_exists(#lp) OR #lp < :paid)",
        { "#pk": "pk", "#lp": "lastPaidAt" },
        { ":paid": paidAt },
      );
      await updateAccount(userId, "REMOVE #pf", "#pf <= :paid", { "#pf": "paymentFailedAt" }, { ":paid": paidAt });
    },

    async linkClawCharge(userId, chargeId) {
      // a string set: adding a charge again changes nothing
      await updateAccount(userId, "ADD #cc :charge", "attribute_exists(#pk)", { "#cc": "clawCharges", "#pk": "pk" }, { ":charge": new Set([chargeId]) });
    },

    async putPurchase(purchase: PurchaseRecord) {
      // The first record of a payment stands: a redelivery writes the same facts again.
      await putNew({ ...purchaseKey(purchase.id), ...purchase });
    },

    async getPurchase(id) {
      return (await get(purchaseKey(id))) as PurchaseRecord | undefined;
    },

    async getClaw(chargeId) {
      return (await get(clawRecordKey(chargeId))) as ClawRecord | undefined;
    },

    async putClaw(claw: ClawRecord, expectedVersion) {
      if (expectedVersion === 0) return putNew({ ...clawRecordKey(claw.chargeId), ...claw });
      try {
        await client.send(
          new PutItemCommand({
            TableName: tableName,
            Item: marshall({ ...clawRecordKey(claw.chargeId), ...claw }, { removeUndefinedValues: true }),
            ConditionExpression: "#v = :v",
            ExpressionAttributeNames: { "#v": "version" },
            ExpressionAttributeValues: marshall({ ":v": expectedVersion }),
          }),
        );
        return true;
      } catch (error) {
        if (isConditionFailure(error)) return false;
        throw error;
      }
    },

    async putWaitingClaw(purchaseIds, fact, now, ttlSeconds) {
      const key = clawFactKey(fact);
      for (const id of purchaseIds) {
        // Overwriting is fine: the same fact always writes the same item.
        await client.send(
          new PutItemCommand({
            TableName: tableName,
            Item: marshall({ pk: purchaseKey(id).pk, sk: `WAIT#${key}`, fact, createdAt: now, ttl: Math.floor(now / 1000) + ttlSeconds }),
          }),
        );
      }
    },

    async waitingClaws(purchaseId) {
      const items = await queryAll({
        KeyConditionExpression: "#pk = :pk AND begins_with(#sk, :wait)",
        ExpressionAttributeNames: { "#pk": "pk", "#sk": "sk" },
        ExpressionAttributeValues: marshall({ ":pk": purchaseKey(purchaseId).pk, ":wait": "WAIT#" }),
      });
      return items.map((item) => readItem(item).fact as ClawFact);
    },

    async parkEvent(event, now) {
      const retried = event.nextAttemptAt !== undefined;
      await client.send(
        new UpdateItemCommand({
          TableName: tableName,
          Key: marshall(parkedKey(event.eventId)),
          UpdateExpression:
            "SET #eventId = :eventId, #type = :type, #reason = :reason, #payload = :payload, #last = :now, " +
            "#first = if_not_exists(#first, :now), #attempts = if_not_exists(#attempts, :zero) + :one, " +
            "#status = if_not_exists(#status, :parked)" +
            (event.customer ? ", #customer = :customer" : "") +
            (retried ? ", #next = :next" : " REMOVE #next"),
          ExpressionAttributeNames: {
            "#eventId": "eventId",
            "#type": "type",
            "#reason": "reason",
            "#payload": "payload",
            "#last": "lastSeenAt",
            "#first": "firstSeenAt",
            "#attempts": "attempts",
            "#status": "status",
            "#next": "nextAttemptAt",
            ...(event.customer ? { "#customer": "customer" } : {}),
          },
          ExpressionAttributeValues: marshall({
            ":eventId": event.eventId,
            ":type": event.type,
            ":reason": event.reason,
            ":payload": event.payload,
            ":now": now,
            ":zero": 0,
            ":one": 1,
            ":parked": "parked",
            ...(event.customer ? { ":customer": event.customer } : {}),
            ...(retried ? { ":next": event.nextAttemptAt } : {}),
          }),
        }),
      );
    },

    async getParkedEvent(eventId) {
      return (await get(parkedKey(eventId))) as ParkedEvent | undefined;
    },

    async listParkedEvents() {
      const items = await queryAll({
        KeyConditionExpression: "#pk = :pk",
        ExpressionAttributeNames: { "#pk": "pk" },
        ExpressionAttributeValues: marshall({ ":pk": PARKED_PK }),
      });
      return items.map((item) => strip(item) as unknown as ParkedEvent);
    },

    async dueParkedEvents(now, limit) {
      // The collection is small by design (one item per event that ever parked; closed ones expire):
      // read all of it, filtered to the parked ones that are due, so the longest-due come first.
      const items = await queryAll({
        KeyConditionExpression: "#pk = :pk",
        FilterExpression: "#status = :parked AND #next <= :now",
        ExpressionAttributeNames: { "#pk": "pk", "#status": "status", "#next": "nextAttemptAt" },
        ExpressionAttributeValues: marshall({ ":pk": PARKED_PK, ":parked": "parked", ":now": now }),
      });
      const due = items.map((item) => strip(item) as unknown as ParkedEvent);
      return due.sort((a, b) => (a.nextAttemptAt ?? 0) - (b.nextAttemptAt ?? 0)).slice(0, limit);
    },

    async closeParkedEvent(eventId, end, now, keepSeconds) {
      // Only a parked event ends (a resolved or dismissed one keeps its first end); parked ones never expire.
      try {
        await client.send(
          new UpdateItemCommand({
            TableName: tableName,
            Key: marshall(parkedKey(eventId)),
            UpdateExpression: `SET #status = :status, #detail = :detail, #closedAt = :now, #ttl = :ttl REMOVE #next`,
            ConditionExpression: "#status = :parked",
            ExpressionAttributeNames: {
              "#next": "nextAttemptAt",
              "#status": "status",
              "#detail": end.status === "resolved" ? "outcome" : "dismissReason",
              "#closedAt": "closedAt",
              "#ttl": "ttl",
            },
            ExpressionAttributeValues: marshall({
              ":status": end.status,
              ":detail": end.status === "resolved" ? end.outcome : end.dismissReason,
              ":now": now,
              ":ttl": Math.floor(now / 1000) + keepSeconds,
              ":parked": "parked",
            }),
          }),
        );
      } catch (error) {
        if (!isConditionFailure(error)) throw error;
      }
    },

    async getReceipt(eventId) {
      return (await get(receiptKey(eventId))) as WebhookReceipt | undefined;
    },

    async putReceipt(receipt: WebhookReceipt, ttlSeconds) {
      await putNew({
        ...receiptKey(receipt.eventId),
        ...receipt,
        ttl: Math.floor(receipt.receivedAt / 1000) + ttlSeconds,
      });
    },
  };
}

