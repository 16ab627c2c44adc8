import { type DynamoDBClient, GetItemCommand, PutItemCommand, QueryCommand, UpdateItemCommand } from "@aws-sdk/client-dynamodb";
import type { APIGatewayProxyStructuredResultV2 } from "aws-lambda";
import { loadConfig } from "../../lib/config.js";
import { httpHandler } from "../../lib/http/stack.js";
import { buildAppDeps } from "../../lib/runtime.js";
import { httpEvent, lambdaContext } from "../helpers/events.js";

/** Wraps a client so the bench can count requests and time spent inside DynamoDB. */
export function instrument(client: DynamoDBClient) {
  const state = { counts: new Map<string, number>(), dynamoMs: 0 };
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const name = (context.commandName ?? "unknown").replace(/Command$/, "");
      state.counts.set(name, (state.counts.get(name) ?? 0) + 1);
      const started = performance.now();
      try {
        return await next(args);
      } finally {
        state.dynamoMs += performance.now() - started;
      }
    },
    { step: "initialize", name: "benchInstrument" },
  );
  return {
    state,
    total: () => [...state.counts.values()].reduce((sum, n) => sum + n, 0),
    /** requests since the last reset, by command name (e.g. { GetItem: 2, UpdateItem: 2 }) */
    byCommand: () => Object.fromEntries([...state.counts].sort(([a], [b]) => a.localeCompare(b))),
    reset: () => {
      state.counts.clear();
      state.dynamoMs = 0;
    },
  };
}

/** The real chat-gate function (middy stack, auth, validation) over the instrumented client. */
export async function gateRig(client: DynamoDBClient, env: Record<string, string>) {
  Object.assign(process.env, env);
  const { route } = await import("../../functions/chat-gate.js");
  const deps = buildAppDeps(loadConfig(process.env), client);
  const handler = httpHandler(route, deps);
  const context = lambdaContext();
  return {
    deps,
    async call(routeKey: string, body: unknown, token: string): Promise<{ status: number; json: Record<string, unknown> }> {
      const result = (await handler(httpEvent({ routeKey, body, token }), context)) as APIGatewayProxyStructuredResultV2;
      return { status: result.statusCode ?? 0, json: JSON.parse(result.body ?? "{}") };
    },
  };
}

/**
 * The original product's gate, for comparison: read the balance, query the ledger for a recent
 * monthly grant, then write the new balance computed from that read (no condition). Settle does
 * the same read-then-write. Correct only when nothing runs concurrently.
 */
export function naiveGate(client: DynamoDBClient, tableName: string) {
  const key = (userId: string) => ({ pk: { S: `N#${userId}` }, sk: { S: "ACCOUNT" } });
  async function readBalance(userId: string): Promise<number> {
    const { Item } = await client.send(new GetItemCommand({ TableName: tableName, Key: key(userId), ConsistentRead: true }));
    return Number(Item?.balance?.N ?? 0);
  }
  async function writeBalance(userId: string, balance: number) {
    await client.send(
      new UpdateItemCommand({
        TableName: tableName,
        Key: key(userId),
        UpdateExpression: "SET #b = :b",
        ExpressionAttributeNames: { "#b": "balance" },
        ExpressionAttributeValues: { ":b": { N: String(balance) } },
      }),
    );
  }
  return {
    async open(userId: string, balance: number) {
      await client.send(
        new PutItemCommand({ TableName: tableName, Item: { ...key(userId), balance: { N: String(balance) } } }),
      );
    },
    readBalance,
    async authorize(userId: string, cost: number): Promise<boolean> {
      const balance = await readBalance(userId);
      await client.send(
        new QueryCommand({
          TableName: tableName,
          KeyConditionExpression: "#pk = :pk AND begins_with(#sk, :grant)",
          ExpressionAttributeNames: { "#pk": "pk", "#sk": "sk" },
          ExpressionAttributeValues: { ":pk": { S: `N#${userId}` }, ":grant": { S: "E#allowance" } },
          ScanIndexForward: false,
          Limit: 1,
          ConsistentRead: true,
        }),
      );
      if (balance < cost) return false;
      await writeBalance(userId, balance - cost);
      return true;
    },
    async settle(userId: string, reserved: number, cost: number) {
      const balance = await readBalance(userId);
      await writeBalance(userId, balance + reserved - cost);
    },
  };
}
