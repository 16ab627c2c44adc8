import {
  type AttributeValue,
  ConditionalCheckFailedException,
  type DynamoDBClient,
  GetItemCommand,
  QueryCommand,
  UpdateItemCommand,
} from "@aws-sdk/client-dynamodb";
import { marshall } from "@aws-sdk/util-dynamodb";
import { readItem } from "../dynamo/items.js";
import { INDEXES, SCHEDULE_SHARDS } from "../ledger/table-definition.js";

export type ScheduleIndex = "grantDue" | "holdDue";

export interface DuePage {
  userIds: string[];
  /** where the next page starts; undefined when the shard's due range is exhausted */
  next?: Record<string, AttributeValue>;
}

/** Reads the sparse schedule indexes: only accounts that are due are ever returned. */
export interface ScheduleStore {
  shards: string[];
  due(index: ScheduleIndex, shard: string, now: number, limit: number, start?: Record<string, AttributeValue>): Promise<DuePage>;
  /** After expiring holds: leave the holdDue index when no hold is open, else move to the earliest expiry. */
  refreshHoldDue(userId: string): Promise<void>;
}

export function createDynamoScheduleStore(client: DynamoDBClient, tableName: string): ScheduleStore {
  return {
    shards: Array.from({ length: SCHEDULE_SHARDS }, (_, i) => `G${i}`),

    async due(index, shard, now, limit, start) {
      const definition = INDEXES[index];
      const page = await client.send(
        new QueryCommand({
          TableName: tableName,
          IndexName: definition.name,
          KeyConditionExpression: "#shard = :shard AND #due <= :now",
          ExpressionAttributeNames: { "#shard": definition.partitionKey, "#due": definition.sortKey },
          ExpressionAttributeValues: marshall({ ":shard": shard, ":now": now }),
          Limit: limit,
          ExclusiveStartKey: start,
        }),
      );
      return {
        userIds: (page.Items ?? []).map((item) => String(readItem(item).pk).slice("U#".length)),
        ...(page.LastEvaluatedKey ? { next: page.LastEvaluatedKey } : {}),
      };
    },

    async refreshHoldDue(userId) {
      const key = marshall({ pk: `U#${userId}`, sk: "ACCOUNT" });
      const { Item } = await client.send(
        new GetItemCommand({
          TableName: tableName,
          Key: key,
          ProjectionExpression: "#holds",
          ExpressionAttributeNames: { "#holds": "holds" },
          ConsistentRead: true,
        }),
      );
      if (!Item) return;
      const holds = (readItem(Item).holds ?? {}) as Record<string, { e: number }>;
      const expiries = Object.values(holds).map((hold) => hold.e);
      try {
        if (expiries.length === 0) {
          // Conditional: an authorize that opened a hold meanwhile keeps the account in the index.
          await client.send(
            new UpdateItemCommand({
              TableName: tableName,
              Key: key,
              UpdateExpression: "REMOVE #shard, #due",
              ConditionExpression: "size(#holds) = :zero AND (attribute_not_exists(#pend) OR size(#pend) = :zero)",
              ExpressionAttributeNames: {
                "#shard": INDEXES.holdDue.partitionKey,
                "#due": INDEXES.holdDue.sortKey,
                "#holds": "holds",
                "#pend": "pend",
              },
              ExpressionAttributeValues: marshall({ ":zero": 0 }),
            }),
          );
        } else {
          // The earliest remaining expiry; a hold opened meanwhile expires later, so this stays safe.
          await client.send(
            new UpdateItemCommand({
              TableName: tableName,
              Key: key,
              UpdateExpression: "SET #due = :due",
              ConditionExpression: "attribute_exists(#shard)",
              ExpressionAttributeNames: { "#shard": INDEXES.holdDue.partitionKey, "#due": INDEXES.holdDue.sortKey },
              ExpressionAttributeValues: marshall({ ":due": Math.min(...expiries) }),
            }),
          );
        }
      } catch (error) {
        if (!(error instanceof ConditionalCheckFailedException)) throw error;
      }
    },
  };
}
