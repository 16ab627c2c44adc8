import { randomUUID } from "node:crypto";
import { DeleteTableCommand, type DynamoDBClient, type DynamoDBClientConfig } from "@aws-sdk/client-dynamodb";
import { afterAll, inject } from "vitest";
import { localDynamoClient } from "../../lib/dynamo/local-client.js";
import { createTable } from "../../lib/ledger/create-table.js";

/** A client of the test run's DynamoDB Local (test/global-setup.ts). */
export function localClient(overrides: DynamoDBClientConfig = {}): DynamoDBClient {
  return localDynamoClient(inject("dynamoEndpoint"), overrides);
}

/**
 * A fresh table (from the shared definition) for one test file; deleted when the file ends. Without
 * its change stream unless asked (`stream: true`, the webhook tests): DynamoDB Local keeps working
 * on every stream-enabled table in the background, and a full run creates hundreds of tables (with
 * streams on all of them, the whole suite ran two to four times slower).
 */
export async function freshTable(prefix = "t", options: { stream?: boolean } = {}): Promise<{ client: DynamoDBClient; tableName: string }> {
  const client = localClient();
  const tableName = `${prefix}-${randomUUID().slice(0, 8)}`;
  await createTable(client, tableName, undefined, { stream: options.stream ?? false });
  afterAll(async () => {
    await client.send(new DeleteTableCommand({ TableName: tableName })).catch(() => undefined);
    client.destroy();
  });
  return { client, tableName };
}

/** Counts the DynamoDB requests a client sends, by command name. */
export function countRequests(client: DynamoDBClient): { counts: Map<string, number>; total(): number; reset(): void } {
  const counts = new Map<string, number>();
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const name = context.commandName ?? "unknown";
      counts.set(name, (counts.get(name) ?? 0) + 1);
      return next(args);
    },
    { step: "initialize", name: `countRequests-${randomUUID()}` },
  );
  return {
    counts,
    total: () => [...counts.values()].reduce((sum, value) => sum + value, 0),
    reset: () => counts.clear(),
  };
}
