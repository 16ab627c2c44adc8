import { type DynamoDBClient, QueryCommand } from "@aws-sdk/client-dynamodb";
import { unmarshall } from "@aws-sdk/util-dynamodb";
import { afterAll, inject, vi } from "vitest";
import { createAuthenticator } from "../../lib/auth.js";
import type { Route } from "../../lib/http/stack.js";
import { httpHandler } from "../../lib/http/stack.js";
import type { LedgerDeps } from "../../lib/ledger/index.js";
import type { AppDeps } from "../../lib/runtime.js";
import { invoke, type EventOptions } from "./events.js";
import { useFixture } from "./fixture.js";
import { ledgerFixture } from "./ledger.js";
import { checkResponse } from "./openapi.js";
import { TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET } from "./tokens.js";

export const APP_URL = "https://app.example.com";
export { OPUS, SONNET } from "./ledger.js";

/**
 * App deps over a fresh DynamoDB Local table (with the ledger fixture's test clock), HS256 auth
 * with issuer and audience, and a `call(route, event)` that runs a function's route through the
 * real middy stack.
 */
export async function appFixture(ledger: Partial<LedgerDeps> = {}, table: { stream?: boolean } = {}) {
  const fx = await ledgerFixture(ledger, table);
  const deps: AppDeps = {
    ledger: fx.deps,
    auth: createAuthenticator({ jwtSecret: TEST_SECRET, issuer: TEST_ISSUER, audience: TEST_AUDIENCE }),
    corsOrigin: APP_URL,
  };
  return { ...fx, deps, call: routeCaller(deps) };
}

/**
 * `call(route, event)`: runs a function's route with `deps` through the real middy stack (its
 * handler built once); every answer is checked against the OpenAPI document (test/helpers/openapi.ts).
 */
export function routeCaller<D extends AppDeps>(deps: D) {
  const handlers = new Map<Route<D>, ReturnType<typeof httpHandler<D>>>();
  return async (route: Route<D>, event: EventOptions) => {
    let handler = handlers.get(route);
    if (!handler) {
      handler = httpHandler(route, deps);
      handlers.set(route, handler);
    }
    const answer = await invoke(handler, event);
    checkResponse(event.routeKey, { status: answer.status, headers: answer.headers, body: answer.json });
    return answer;
  };
}

export type AppFixture = Awaited<ReturnType<typeof appFixture>>;

/** The app fixture of a test file, made once before its tests. */
export const useAppFixture = (ledger: Partial<LedgerDeps> = {}): AppFixture => useFixture("useAppFixture", () => appFixture(ledger));

/** Every item stored under a user's partition: to prove a refused request wrote nothing. */
export async function itemsOf(client: DynamoDBClient, tableName: string, userId: string) {
  const { Items = [] } = await client.send(
    new QueryCommand({
      TableName: tableName,
      KeyConditionExpression: "pk = :pk",
      ExpressionAttributeValues: { ":pk": { S: `U#${userId}` } },
      ConsistentRead: true,
    }),
  );
  return Items.map((item) => unmarshall(item));
}

/** The environment a deployed function would get, pointed at a DynamoDB Local table. */
export function functionEnv(tableName: string, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    TABLE_NAME: tableName,
    DYNAMODB_ENDPOINT: inject("dynamoEndpoint"),
    AWS_REGION: "local",
    AUTH_JWT_SECRET: TEST_SECRET,
    AUTH_ISSUER: TEST_ISSUER,
    AUTH_AUDIENCE: TEST_AUDIENCE,
    APP_URL,
    ...overrides,
  };
}

/**
 * Imports the real function modules the way Lambda does: environment first, then the module, whose
 * cold start reads it. Env stubs are undone when the test file ends.
 */
export async function importFunctions(env: Record<string, string>) {
  for (const [name, value] of Object.entries(env)) vi.stubEnv(name, value);
  afterAll(() => {
    vi.unstubAllEnvs();
  });
  const [gate, credits] = await Promise.all([import("../../functions/chat-gate.js"), import("../../functions/credits.js")]);
  return { gate, credits };
}

/**
 * The real gate and credits functions of a test file, cold-started (once, before its tests) from
 * the environment of a function pointed at the fixture's table (`overrides` added to it).
 */
export const useFunctions = (fx: { tableName: string }, overrides: Record<string, string> = {}) =>
  useFixture("useFunctions", () => importFunctions(functionEnv(fx.tableName, overrides)));
