import { type DynamoDBClient, GetItemCommand, TransactionCanceledException, TransactWriteItemsCommand, type TransactWriteItem } from "@aws-sdk/client-dynamodb";
import { marshall } from "@aws-sdk/util-dynamodb";
import { readItem } from "../dynamo/items.js";
import { accountKey, userPk } from "../ledger/table-definition.js";
import type { AutoTopUpState } from "./model.js";
import type { AccountMirror } from "./rules.js";
import type { StoredTopUp, TopUpStore } from "./store.js";

/**
 * Auto top-up's items in the single table:
 *
 * | pk         | sk          | what                                                                 |
 * | ---------- | ----------- | -------------------------------------------------------------------- |
 * | `U#<user>` | `AUTOTOPUP` | `state` (settings, the month's count, failures, in flight, last attempt) and `version` |
 * | `U#<user>` | `ACCOUNT`   | `autoTopUpBelow`: the threshold while enabled; `autoTopUpWaiting`: a crossing waits for a later month's limit (for the change stream) |
 *
 * The state holds only ids the code made or Stripe returned and catalog pack ids as values, never
 * as keys, so it is stored as a plain map.
 */
export const TOP_UP_SK = "AUTOTOPUP";
const topUpKey = (userId: string) => ({ pk: userPk(userId), sk: TOP_UP_SK });

/** The account item's copy: SET what the mirror has, REMOVE what it lacks. */
function mirrorUpdate(tableName: string, userId: string, mirror: AccountMirror): NonNullable<TransactWriteItem["Update"]> {
  const set: string[] = [];
  const remove: string[] = [];
  const values: Record<string, unknown> = {};
  if (mirror.below === undefined) remove.push("autoTopUpBelow");
  else {
    set.push("autoTopUpBelow = :below");
    values[":below"] = mirror.below;
  }
  if (mirror.waiting) {
    set.push("autoTopUpWaiting = :waiting");
    values[":waiting"] = true;
  } else remove.push("autoTopUpWaiting");
  return {
    TableName: tableName,
    Key: marshall(accountKey(userId)),
    ConditionExpression: "attribute_exists(pk)",
    UpdateExpression: [set.length ? `SET ${set.join(", ")}` : "", remove.length ? `REMOVE ${remove.join(", ")}` : ""].filter(Boolean).join(" "),
    ...(Object.keys(values).length ? { ExpressionAttributeValues: marshall(values) } : {}),
  };
}

export function createDynamoTopUpStore(client: DynamoDBClient, tableName: string): TopUpStore {
  return {
    async get(userId) {
      const { Item } = await client.send(new GetItemCommand({ TableName: tableName, Key: marshall(topUpKey(userId)), ConsistentRead: true }));
      if (!Item) return undefined;
      const item = readItem(Item) as { state: AutoTopUpState; version: number };
      return { state: item.state, version: item.version } satisfies StoredTopUp;
    },

    async save(userId, state, expectedVersion, mirror) {
      const put: TransactWriteItem = {
        Put: {
          TableName: tableName,
          Item: marshall({ ...topUpKey(userId), userId, state, version: expectedVersion + 1 }, { removeUndefinedValues: true }),
          ConditionExpression: expectedVersion === 0 ? "attribute_not_exists(pk)" : "version = :version",
          ...(expectedVersion === 0 ? {} : { ExpressionAttributeValues: marshall({ ":version": expectedVersion }) }),
        },
      };
      const account: TransactWriteItem[] = mirror === undefined ? [] : [{ Update: mirrorUpdate(tableName, userId, mirror) }];
      try {
        await client.send(new TransactWriteItemsCommand({ TransactItems: [put, ...account] }));
        return true;
      } catch (error) {
        // the version moved (or the item appeared): another write won; the caller reads again
        if (error instanceof TransactionCanceledException && error.CancellationReasons?.some((reason) => reason.Code === "ConditionalCheckFailed" || reason.Code === "TransactionConflict")) {
          // but a missing account is not a conflict: the caller made sure it exists
          if (error.CancellationReasons?.[1]?.Code === "ConditionalCheckFailed") throw new Error(`auto top-up: no account ${userId}`);
          return false;
        }
        throw error;
      }
    },
  };
}
