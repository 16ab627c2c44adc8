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
import { accountFieldsFromItem, storedAccountName } from "../ledger/dynamo-item.js";
import { accountKey, INDEXES, SCHEDULE_SHARDS, userIdOfPk } from "../ledger/table-definition.js";
import type { ScheduleStore } from "./schedule-store.js";

/** DynamoDB adapter of the sweep's schedule port: the sparse due indexes of the single table. */
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
          ExclusiveStartKey: start as Record<string, AttributeValue> | undefined,
        }),
      );
      return {
        userIds: (page.Items ?? []).map((item) => userIdOfPk(String(readItem(item).pk))),
        ...(page.LastEvaluatedKey ? { next: page.LastEvaluatedKey } : {}),
      };
    },

    async refreshHoldDue(userId) {
      const key = marshall(accountKey(userId));
      const { Item } = await client.send(
        new GetItemCommand({
          TableName: tableName,
          Key: key,
          ProjectionExpression: "#holds",
          ExpressionAttributeNames: { "#holds": storedAccountName("holds") },
          ConsistentRead: true,
        }),
      );
      if (!Item) return;
      const expiries = Object.values(accountFieldsFromItem(Item).holds ?? {}).map((hold) => hold.expiresAt);
      try {
        if (expiries.length === 0) {
          // Conditional: an authorize that opened a hold meanwhile keeps the account in the index.
          await client.send(
            new UpdateItemCommand({
              TableName: tableName,
              Key: key,
              UpdateExpression: "REMOVE #shard, #due",
              ConditionExpression: "size(#holds) = :zero AND (attribute_not_exists(#outbox) OR size(#outbox) = :zero)",
              ExpressionAttributeNames: {
                "#shard": INDEXES.holdDue.partitionKey,
                "#due": INDEXES.holdDue.sortKey,
                "#holds": storedAccountName("holds"),
                "#outbox": storedAccountName("outbox"),
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
