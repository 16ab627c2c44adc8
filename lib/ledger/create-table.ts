import {
  CreateTableCommand,
  type DynamoDBClient,
  type KeySchemaElement,
  UpdateTimeToLiveCommand,
  waitUntilTableExists,
} from "@aws-sdk/client-dynamodb";
import { type TableDefinition, tableDefinition } from "./table-definition.js";

/** A key schema: partition (HASH) and sort (RANGE) attribute. */
const keySchema = (partitionKey: string, sortKey: string): KeySchemaElement[] => [
  { AttributeName: partitionKey, KeyType: "HASH" },
  { AttributeName: sortKey, KeyType: "RANGE" },
];

/** Creates the table from the shared definition (local runs and tests; CDK deploys it in AWS). */
export async function createTable(
  client: DynamoDBClient,
  tableName: string,
  definition: TableDefinition = tableDefinition,
  options: { stream?: boolean } = {},
): Promise<void> {
  const attributes = new Map<string, string>();
  const remember = (key: { name: string; type: string }) => attributes.set(key.name, key.type);
  remember(definition.partitionKey);
  remember(definition.sortKey);
  for (const index of definition.localIndexes) remember(index.sortKey);
  for (const index of definition.globalIndexes) {
    remember(index.partitionKey);
    remember(index.sortKey);
  }
  await client.send(
    new CreateTableCommand({
      TableName: tableName,
      BillingMode: "PAY_PER_REQUEST",
      // the change stream the webhook events are derived from (lib/events), as the CDK stack has it
      ...(options.stream === false ? {} : { StreamSpecification: { StreamEnabled: true, StreamViewType: definition.streamViewType } }),
      AttributeDefinitions: [...attributes].map(([AttributeName, AttributeType]) => ({
        AttributeName,
        AttributeType: AttributeType as "S" | "N",
      })),
      KeySchema: keySchema(definition.partitionKey.name, definition.sortKey.name),
      LocalSecondaryIndexes: definition.localIndexes.map((index) => ({
        IndexName: index.name,
        KeySchema: keySchema(definition.partitionKey.name, index.sortKey.name),
        Projection: { ProjectionType: "ALL" },
      })),
      GlobalSecondaryIndexes: definition.globalIndexes.map((index) => ({
        IndexName: index.name,
        KeySchema: keySchema(index.partitionKey.name, index.sortKey.name),
        // Schedule indexes carry only keys: the sweep re-reads each due account consistently anyway.
        Projection: { ProjectionType: "KEYS_ONLY" },
      })),
    }),
  );
  await waitUntilTableExists({ client, maxWaitTime: 30 }, { TableName: tableName });
  await client.send(
    new UpdateTimeToLiveCommand({
      TableName: tableName,
      TimeToLiveSpecification: { AttributeName: definition.ttlAttribute, Enabled: true },
    }),
  );
}
