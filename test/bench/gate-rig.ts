import { type DynamoDBClient, GetItemCommand, PutItemCommand, QueryCommand, UpdateItemCommand } from "@aws-sdk/client-dynamodb";
import type { APIGatewayProxyStructuredResultV2 } from "aws-lambda";
import { loadConfig } from "../../lib/config.js";
import { httpHandler } from "../../lib/http/stack.js";
import { buildAppDeps } from "../../lib/runtime.js";
import { httpEvent, lambdaContext } from "../helpers/events.js";

/** Commands that accept `ReturnConsumedCapacity`, split by what they consume. */
const WRITES = new Set(["PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"]);
const READS = new Set(["GetItem", "Query", "Scan", "TransactGetItems", "BatchGetItem"]);

/** Capacity units by where DynamoDB consumed them: "table", "lsi:<name>", "gsi:<name>". */
export type UnitsByPart = Record<string, number>;

export interface Units {
  write: number;
  read: number;
  writeByPart: UnitsByPart;
  readByPart: UnitsByPart;
  /** requests that failed (a refused condition, a cancelled transaction): DynamoDB reports no capacity for them */
  failed: Record<string, number>;
  /**
   * TransactWriteItems whose table units were doubled here: AWS bills a transactional write 2 units
   * per KB, and DynamoDB Local reports that only when the transaction also writes an index (a
   * 2-item transaction: table 4 + LSI 2 with an index entry, table 2 without one)
   */
  transactionsDoubled: number;
}

type Capacity = {
  CapacityUnits?: number;
  WriteCapacityUnits?: number;
  ReadCapacityUnits?: number;
  Table?: { CapacityUnits?: number; WriteCapacityUnits?: number; ReadCapacityUnits?: number };
  LocalSecondaryIndexes?: Record<string, { CapacityUnits?: number; WriteCapacityUnits?: number; ReadCapacityUnits?: number }>;
  GlobalSecondaryIndexes?: Record<string, { CapacityUnits?: number; WriteCapacityUnits?: number; ReadCapacityUnits?: number }>;
};

/**
 * Wraps a client so the bench can count requests and time spent inside DynamoDB and, while
 * `capacity(true)`, ask every request for `ReturnConsumedCapacity: "INDEXES"` and add up what
 * DynamoDB itself says it consumed (the bill), by table and index. The product never asks for it:
 * this middleware exists only on the bench's client.
 */
export function instrument(client: DynamoDBClient) {
  const state = { counts: new Map<string, number>(), dynamoMs: 0, capacity: false, units: emptyUnits() };
  const add = (into: UnitsByPart, part: string, n: number | undefined) => {
    if (n) into[part] = (into[part] ?? 0) + n;
  };
  const record = (kind: "write" | "read", consumed: Capacity | Capacity[] | undefined, transaction: boolean) => {
    const parts = kind === "write" ? state.units.writeByPart : state.units.readByPart;
    const units = (c: { CapacityUnits?: number; WriteCapacityUnits?: number; ReadCapacityUnits?: number } | undefined) =>
      c ? ((kind === "write" ? c.WriteCapacityUnits : c.ReadCapacityUnits) ?? c.CapacityUnits ?? 0) : 0;
    for (const c of [consumed ?? []].flat()) {
      const indexed = Object.keys(c.LocalSecondaryIndexes ?? {}).length + Object.keys(c.GlobalSecondaryIndexes ?? {}).length > 0;
      // DynamoDB Local reports a transaction that writes no index undoubled: bill it as AWS does
      const factor = transaction && !indexed ? 2 : 1;
      if (factor === 2) state.units.transactionsDoubled += 1;
      const table = c.Table ? units(c.Table) : units(c);
      state.units[kind] += units(c) + table * (factor - 1);
      add(parts, "table", table * factor);
      for (const [name, index] of Object.entries(c.LocalSecondaryIndexes ?? {})) add(parts, `lsi:${name}`, units(index));
      for (const [name, index] of Object.entries(c.GlobalSecondaryIndexes ?? {})) add(parts, `gsi:${name}`, units(index));
    }
  };
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const name = (context.commandName ?? "unknown").replace(/Command$/, "");
      state.counts.set(name, (state.counts.get(name) ?? 0) + 1);
      const kind = WRITES.has(name) ? "write" : READS.has(name) ? "read" : undefined;
      const ask = state.capacity && kind !== undefined;
      const started = performance.now();
      try {
        const result = await next(ask ? { ...args, input: { ...(args.input as object), ReturnConsumedCapacity: "INDEXES" } } : args);
        if (ask) record(kind, (result.output as { ConsumedCapacity?: Capacity | Capacity[] }).ConsumedCapacity, name === "TransactWriteItems");
        return result;
      } catch (error) {
        if (ask) state.units.failed[name] = (state.units.failed[name] ?? 0) + 1;
        throw error;
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
    /** asks DynamoDB for consumed capacity on every request while on (off for the timed sections) */
    capacity: (on: boolean) => {
      state.capacity = on;
    },
    /** capacity units DynamoDB reported since the last reset */
    units: (): Units => structuredClone(state.units),
    reset: () => {
      state.counts.clear();
      state.dynamoMs = 0;
      state.units = emptyUnits();
    },
  };
}

export type Meter = ReturnType<typeof instrument>;

function emptyUnits(): Units {
  return { write: 0, read: 0, writeByPart: {}, readByPart: {}, failed: {}, transactionsDoubled: 0 };
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
