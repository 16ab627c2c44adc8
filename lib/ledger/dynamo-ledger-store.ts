import {
  type AttributeValue,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  QueryCommand,
  TransactionCanceledException,
  type TransactWriteItem,
  TransactWriteItemsCommand,
  UpdateItemCommand,
  type UpdateItemCommandInput,
} from "@aws-sdk/client-dynamodb";
import { marshall } from "@aws-sdk/util-dynamodb";
import { readItem } from "../dynamo/items.js";
import { ownValue } from "../own-keys.js";
import {
  type AccountRecord,
  type HoldIdentity,
  type HoldRecord,
  type LedgerEntry,
  outboxEntry,
  type PendingEntry,
  type ReleaseMarker,
} from "./account.js";
import { compileRules } from "./dynamo-conditions.js";
import { ExpressionParts, updateExpression } from "./dynamo-expression.js";
import {
  accountFieldsFromItem,
  accountFromItem,
  accountItem,
  accountPath,
  ENTRY_PREFIX,
  entryFromItem,
  entryItem,
  holdItem,
} from "./dynamo-item.js";
import {
  type AccountCommit,
  type CommitOutcome,
  ContentionError,
  type LedgerStore,
  type OutboxSettle,
  type ReleaseOutcome,
  type ReserveOutcome,
  type ReserveRequest,
} from "./store.js";
import { accountKey, INDEXES, userPk } from "./table-definition.js";

/** How many left-behind per-minute rate counters an account may carry before a reserve prunes them. */
export const STALE_RATE_COUNTERS_PRUNED_AT = 8;
const MARKER_PREFIX = "H#";
/** Release markers answer late settles/releases for this long, then TTL removes them. */
const MARKER_TTL_SECONDS = 35 * 86_400;

const entryKey = (userId: string, key: string) => marshall({ pk: userPk(userId), sk: `${ENTRY_PREFIX}${key}` });
const markerSk = (hold: HoldIdentity) => `${MARKER_PREFIX}${hold.requestId}#${hold.tag}`;

function putNew(tableName: string, item: Record<string, AttributeValue>): TransactWriteItem {
  return {
    Put: {
      TableName: tableName,
      Item: item,
      ConditionExpression: "attribute_not_exists(#pk)",
      ExpressionAttributeNames: { "#pk": "pk" },
    },
  };
}

/** Maps a cancelled transaction to which item failed; rethrows what is not a condition failure. */
function cancelledItems(error: unknown): { failed: number[]; items: (Record<string, AttributeValue> | undefined)[] } {
  if (!(error instanceof TransactionCanceledException)) throw error;
  const reasons = error.CancellationReasons ?? [];
  if (reasons.some((reason) => reason.Code === "TransactionConflict" || reason.Code === "ThrottlingError")) {
    throw new ContentionError(reasons.map((reason) => reason.Code).join(","));
  }
  const failed = reasons.flatMap((reason, index) => (reason.Code === "ConditionalCheckFailed" ? [index] : []));
  if (failed.length === 0) throw error;
  return { failed, items: reasons.map((reason) => reason.Item) };
}

/** `holds.<requestId>…` (and holdSeq, holdBalance): the requestId is a user's string, stored encoded. */
const holdPath = (parts: ExpressionParts, map: "holds" | "holdSeq" | "holdBalance", requestId: string, ...rest: (keyof HoldRecord)[]) =>
  accountPath(parts, map, { key: requestId }, ...rest);

function closeHoldPaths(parts: ExpressionParts, requestId: string): string[] {
  return [holdPath(parts, "holds", requestId), holdPath(parts, "holdSeq", requestId), holdPath(parts, "holdBalance", requestId)];
}

/**
 * The hold check of every write that closes a hold: the hold `requestId` is still open with this
 * tag (its identity) and this reservation, and (when given) was reserved for this model.
 */
function holdStillOpen(parts: ExpressionParts, hold: { requestId: string; tag: string; reserved: number; model?: string }): string[] {
  const conditions = [
    `${holdPath(parts, "holds", hold.requestId, "tag")} = ${parts.value(hold.tag)}`,
    `${holdPath(parts, "holds", hold.requestId, "reserved")} = ${parts.value(hold.reserved)}`,
  ];
  if (hold.model !== undefined) conditions.push(`${holdPath(parts, "holds", hold.requestId, "model")} = ${parts.value(hold.model)}`);
  return conditions;
}

/** DynamoDB adapter of the ledger store; one client and table for the process. */
export function createDynamoLedgerStore(client: DynamoDBClient, tableName: string): LedgerStore {
  async function getAccount(userId: string): Promise<AccountRecord | undefined> {
    const { Item } = await client.send(
      new GetItemCommand({ TableName: tableName, Key: marshall(accountKey(userId)), ConsistentRead: true }),
    );
    return accountFromItem(Item);
  }

  /**
   * The reserve drops the previous minute's rate counter as it goes, but a user who skips a minute
   * leaves their last counter behind. Once STALE_RATE_COUNTERS_PRUNED_AT such counters pile up,
   * one extra write removes them, so the account item stays small and the steady state keeps its
   * single request. A failed prune is retried by a later reserve; it never fails the authorize.
   */
  async function pruneRateCounters(userId: string, counters: Record<string, number> | undefined, minute: number): Promise<void> {
    const stale = Object.keys(counters ?? {}).filter((key) => Number(key) < minute);
    if (stale.length < STALE_RATE_COUNTERS_PRUNED_AT) return;
    const p = new ExpressionParts();
    try {
      await client.send(
        new UpdateItemCommand({
          TableName: tableName,
          Key: marshall(accountKey(userId)),
          UpdateExpression: updateExpression([], stale.map((key) => accountPath(p, "rateCounters", key))),
          ConditionExpression: `attribute_exists(${p.path("pk")})`,
          ...p.attributes(),
        }),
      );
    } catch {
      // the counters are only a throttle: leaving them for the next reserve loses nothing
    }
  }

  async function transact(items: TransactWriteItem[]): Promise<void> {
    await client.send(new TransactWriteItemsCommand({ TransactItems: items }));
  }

  return {
    getAccount,

    async createAccount(account, entries) {
      try {
        await transact([
          putNew(tableName, accountItem(account)),
          ...entries.map((entry) => putNew(tableName, entryItem(entry))),
        ]);
        return true;
      } catch (error) {
        const { failed } = cancelledItems(error);
        if (failed.includes(0)) return false;
        throw error;
      }
    },

    async reserve(request: ReserveRequest): Promise<ReserveOutcome> {
      const p = new ExpressionParts();
      const hold = holdPath(p, "holds", request.requestId);
      const available = accountPath(p, "available");
      const holdShard = accountPath(p, "holdShard");
      const holdDueAt = accountPath(p, "holdDueAt");
      const sets = [
        `${available} = ${available} - ${p.value(request.hold.reserved)}`,
        `${hold} = ${p.value(holdItem(request.hold))}`,
        `${holdPath(p, "holdSeq", request.requestId)} = ${accountPath(p, "seq")}`,
        `${holdPath(p, "holdBalance", request.requestId)} = ${accountPath(p, "balance")}`,
        `${holdShard} = if_not_exists(${holdShard}, ${p.value(request.holdShard)})`,
        `${holdDueAt} = if_not_exists(${holdDueAt}, ${p.value(request.hold.expiresAt)})`,
      ];
      const removes: string[] = [];
      if (request.rateCounterMinute !== undefined) {
        // One counter per minute in a map; the previous minute's counter is dropped as we go.
        const counter = accountPath(p, "rateCounters", String(request.rateCounterMinute));
        sets.push(`${counter} = if_not_exists(${counter}, ${p.value(0)}) + ${p.value(1)}`);
        removes.push(accountPath(p, "rateCounters", String(request.rateCounterMinute - 1)));
      }
      const condition = compileRules(p, request.rules);
      try {
        const { Attributes } = await client.send(
          new UpdateItemCommand({
            TableName: tableName,
            Key: marshall(accountKey(request.userId)),
            UpdateExpression: updateExpression(sets, removes),
            ConditionExpression: condition,
            ...p.attributes(),
            ReturnValues: "ALL_NEW",
            ReturnValuesOnConditionCheckFailure: "ALL_OLD",
          }),
        );
        const account = accountFromItem(Attributes) as AccountRecord;
        if (request.rateCounterMinute !== undefined) await pruneRateCounters(request.userId, account.rateCounters, request.rateCounterMinute);
        return { kind: "reserved", account };
      } catch (error) {
        if (error instanceof ConditionalCheckFailedException) return { kind: "rejected", account: accountFromItem(error.Item) };
        throw error;
      }
    },

    async commit(commit: AccountCommit): Promise<CommitOutcome> {
      const p = new ExpressionParts();
      const seq = accountPath(p, "seq");
      const balance = accountPath(p, "balance");
      const available = accountPath(p, "available");
      const sets = [
        `${balance} = ${balance} + ${p.value(commit.balanceDelta)}`,
        `${available} = ${available} + ${p.value(commit.availableDelta)}`,
        `${seq} = ${p.value(commit.expectedSeq + commit.entries.length)}`,
      ];
      if (commit.spentDelta) sets.push(`${accountPath(p, "spent")} = ${accountPath(p, "spent")} + ${p.value(commit.spentDelta)}`);
      for (const [name, value] of Object.entries(commit.set ?? {}) as [keyof AccountRecord, unknown][]) {
        if (value !== undefined) sets.push(`${accountPath(p, name)} = ${p.value(value)}`);
      }
      const removes = (commit.remove ?? []).map((name) => accountPath(p, name));
      const conditions = [`${seq} = ${p.value(commit.expectedSeq)}`];
      if (commit.expectedBalance !== undefined) conditions.push(`${balance} = ${p.value(commit.expectedBalance)}`);
      if (commit.requireAvailable !== undefined) {
        conditions.push(`${available} >= ${p.value(commit.requireAvailable)}`);
      }
      if (commit.closeHold) {
        conditions.push(...holdStillOpen(p, commit.closeHold));
        removes.push(...closeHoldPaths(p, commit.closeHold.requestId));
      }
      if (commit.periodBelow !== undefined) {
        conditions.push(`${accountPath(p, "periodIndex")} < ${p.value(commit.periodBelow)}`);
      }
      const accountUpdate: TransactWriteItem = {
        Update: {
          TableName: tableName,
          Key: marshall(accountKey(commit.userId)),
          UpdateExpression: updateExpression(sets, removes),
          ConditionExpression: conditions.join(" AND "),
          ...p.attributes(),
          ReturnValuesOnConditionCheckFailure: "ALL_OLD",
        },
      };
      const markerCheck: TransactWriteItem[] = commit.markerNotReleased
        ? [
            {
              ConditionCheck: {
                TableName: tableName,
                Key: marshall({ pk: userPk(commit.userId), sk: markerSk(commit.markerNotReleased) }),
                ConditionExpression: "attribute_exists(#pk) AND attribute_not_exists(#released)",
                ExpressionAttributeNames: { "#pk": "pk", "#released": "releasedByCallerAt" },
              },
            },
          ]
        : [];
      try {
        await transact([...commit.entries.map((entry) => putNew(tableName, entryItem(entry))), accountUpdate, ...markerCheck]);
        return { kind: "committed" };
      } catch (error) {
        const { failed, items } = cancelledItems(error);
        const duplicate = failed.find((index) => index < commit.entries.length);
        if (duplicate !== undefined) return { kind: "duplicate", key: (commit.entries[duplicate] as LedgerEntry).key };
        const accountIndex = commit.entries.length;
        const item = items[accountIndex];
        return { kind: "stale", account: item ? accountFromItem(item) : await getAccount(commit.userId) };
      }
    },

    async release(hold, marker: ReleaseMarker): Promise<ReleaseOutcome> {
      const p = new ExpressionParts();
      const available = accountPath(p, "available");
      const accountUpdate: TransactWriteItem = {
        Update: {
          TableName: tableName,
          Key: marshall(accountKey(hold.userId)),
          UpdateExpression: updateExpression(
            [`${available} = ${available} + ${p.value(hold.reserved)}`],
            closeHoldPaths(p, hold.requestId),
          ),
          // identity and reservation only: `hold` may carry more (a hold id's fields), none of which a release checks
          ConditionExpression: holdStillOpen(p, { requestId: hold.requestId, tag: hold.tag, reserved: hold.reserved }).join(" AND "),
          ...p.attributes(),
          ReturnValuesOnConditionCheckFailure: "ALL_OLD",
        },
      };
      const markerItem = marshall({
        pk: userPk(hold.userId),
        sk: markerSk(hold),
        ...marker,
        ttl: Math.floor(marker.at / 1000) + MARKER_TTL_SECONDS,
      });
      try {
        await transact([putNew(tableName, markerItem), accountUpdate]);
        const account = await getAccount(hold.userId);
        return { kind: "released", account: account as AccountRecord };
      } catch (error) {
        const { failed, items } = cancelledItems(error);
        if (failed.includes(0)) return { kind: "marked" };
        return { kind: "stale", account: items[1] ? accountFromItem(items[1]) : await getAccount(hold.userId) };
      }
    },

    async settleToOutbox(request: OutboxSettle) {
      const { hold, key, cost } = request;
      const p = new ExpressionParts();
      const path = (name: keyof AccountRecord) => accountPath(p, name);
      const pending: PendingEntry = { amount: -cost, refs: request.refs, createdAt: request.now };
      const sets = [
        `${path("balance")} = ${path("balance")} - ${p.value(cost)}`,
        `${path("available")} = ${path("available")} + ${p.value(hold.reserved - cost)}`,
        `${path("spent")} = ${path("spent")} + ${p.value(cost)}`,
        `${path("seq")} = ${path("seq")} + ${p.value(1)}`,
        // Right-hand operands are the values before this update: the entry's exact place.
        `${accountPath(p, "outboxSeq", key)} = ${path("seq")}`,
        `${accountPath(p, "outboxBalance", key)} = ${path("balance")}`,
        `${accountPath(p, "outbox", key)} = ${p.value(pending)}`,
        // Keeps the account visible to the sweep until the outbox is empty (crash recovery).
        `${path("holdShard")} = if_not_exists(${path("holdShard")}, ${p.value(request.holdShard)})`,
        `${path("holdDueAt")} = if_not_exists(${path("holdDueAt")}, ${p.value(request.now)})`,
      ];
      try {
        const { Attributes } = await client.send(
          new UpdateItemCommand({
            TableName: tableName,
            Key: marshall(accountKey(hold.userId)),
            UpdateExpression: updateExpression(sets, closeHoldPaths(p, hold.requestId)),
            ConditionExpression: holdStillOpen(p, hold).join(" AND "),
            ...p.attributes(),
            ReturnValues: "UPDATED_NEW",
          }),
        );
        const updated = accountFieldsFromItem(Attributes ?? {});
        const seqBefore = Number(ownValue(updated.outboxSeq, key));
        const balanceBefore = Number(ownValue(updated.outboxBalance, key));
        return {
          kind: "applied" as const,
          entry: outboxEntry(hold.userId, key, pending, seqBefore, balanceBefore),
        };
      } catch (error) {
        if (error instanceof ConditionalCheckFailedException) return { kind: "stale" as const };
        throw error;
      }
    },

    async materialize(userId, entries) {
      for (const entry of entries) {
        const p = new ExpressionParts();
        const removal: TransactWriteItem = {
          Update: {
            TableName: tableName,
            Key: marshall(accountKey(userId)),
            UpdateExpression: updateExpression(
              [],
              [accountPath(p, "outbox", entry.key), accountPath(p, "outboxSeq", entry.key), accountPath(p, "outboxBalance", entry.key)],
            ),
            ...p.attributes(),
          },
        };
        try {
          await transact([putNew(tableName, entryItem(entry)), removal]);
        } catch (error) {
          const { failed } = cancelledItems(error);
          if (!failed.includes(0)) throw error;
          // Written before (a retry after a crash): just empty the outbox slot.
          await client.send(new UpdateItemCommand(removal.Update as UpdateItemCommandInput));
        }
      }
    },

    async getEntry(userId, key) {
      const { Item } = await client.send(
        new GetItemCommand({ TableName: tableName, Key: entryKey(userId, key), ConsistentRead: true }),
      );
      return Item ? entryFromItem(Item) : undefined;
    },

    async markReleasedAfterExpiry(hold, settleKey, at) {
      try {
        await transact([
          {
            Update: {
              TableName: tableName,
              Key: marshall({ pk: userPk(hold.userId), sk: markerSk(hold) }),
              UpdateExpression: "SET #released = :at",
              ConditionExpression: "attribute_exists(#pk) AND attribute_not_exists(#released)",
              ExpressionAttributeNames: { "#pk": "pk", "#released": "releasedByCallerAt" },
              ExpressionAttributeValues: marshall({ ":at": at }),
            },
          },
          {
            ConditionCheck: {
              TableName: tableName,
              Key: entryKey(hold.userId, settleKey),
              ConditionExpression: "attribute_not_exists(#pk)",
              ExpressionAttributeNames: { "#pk": "pk" },
            },
          },
        ]);
        return "released";
      } catch (error) {
        const { failed } = cancelledItems(error);
        return failed.includes(1) ? "settled" : "released";
      }
    },

    async getReleaseMarker(hold) {
      const { Item } = await client.send(
        new GetItemCommand({
          TableName: tableName,
          Key: marshall({ pk: userPk(hold.userId), sk: markerSk(hold) }),
          ConsistentRead: true,
        }),
      );
      if (!Item) return undefined;
      const { pk: _pk, sk: _sk, ttl: _ttl, ...marker } = readItem(Item);
      return marker as ReleaseMarker;
    },

    async listEntries(userId, { limit, beforeSeq }) {
      const p = new ExpressionParts();
      const keyCondition = [`${p.path("pk")} = ${p.value(userPk(userId))}`];
      if (beforeSeq !== undefined) keyCondition.push(`${p.path(INDEXES.history.sortKey)} < ${p.value(beforeSeq)}`);
      const { Items = [] } = await client.send(
        new QueryCommand({
          TableName: tableName,
          IndexName: INDEXES.history.name,
          KeyConditionExpression: keyCondition.join(" AND "),
          ...p.attributes(),
          ScanIndexForward: false,
          Limit: limit,
          ConsistentRead: true,
        }),
      );
      return Items.map(entryFromItem);
    },

    async allEntries(userId) {
      const entries: LedgerEntry[] = [];
      let startKey: Record<string, AttributeValue> | undefined;
      do {
        const page = await client.send(
          new QueryCommand({
            TableName: tableName,
            KeyConditionExpression: "#pk = :pk AND begins_with(#sk, :prefix)",
            ExpressionAttributeNames: { "#pk": "pk", "#sk": "sk" },
            ExpressionAttributeValues: marshall({ ":pk": userPk(userId), ":prefix": ENTRY_PREFIX }),
            ConsistentRead: true,
            ExclusiveStartKey: startKey,
          }),
        );
        entries.push(...(page.Items ?? []).map(entryFromItem));
        startKey = page.LastEvaluatedKey;
      } while (startKey);
      return entries;
    },
  };
}
