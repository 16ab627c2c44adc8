import { describe, expect, it } from "vitest";
import { authorizeChat, changePlanSchedule, settleChat } from "../../lib/ledger/index.js";
import { invoke } from "../helpers/events.js";
import { itemsOf, OPUS, SONNET, useAppFixture, useFunctions } from "../helpers/http.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { serviceToken, signToken, userToken } from "../helpers/tokens.js";

captureLogs();
const fx = useAppFixture();
const fns = useFunctions(fx);

const credits = async (routeKey: string, userId: string, query?: Record<string, string>) =>
  invoke(fns.credits.handler, { routeKey, token: await userToken(userId), ...(query ? { query } : {}) });

/** Charges `count` small calls straight through the ledger, one settle entry each. */
async function chargeCalls(userId: string, count: number) {
  for (let i = 0; i < count; i++) {
    const hold = await authorizeChat(fx.deps.ledger, {
      userId,
      requestId: `call-${i}`,
      model: SONNET,
      inputTokens: 1000,
      maxOutputTokens: 100,
    });
    await settleChat(fx.deps.ledger, { holdId: hold.holdId, inputTokens: 1000, outputTokens: 100 });
  }
}

describe("GET /v1/credits", () => {
  it("answers the signed-in user's balance view; a new user sees the signup bonus and nothing is written", async () => {
    const user = uniqueUser();
    const res = await credits("GET /v1/credits", user);
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({
      userId: user,
      plan: "free",
      interval: "month",
      balance: 10_000,
      available: 10_000,
      held: 0,
      allowance: 10_000,
      purchased: 0,
      monthlyAllowance: 10_000,
      nextGrantAt: expect.any(String),
      subscription: null,
    });
    expect(await itemsOf(fx.client, fx.tableName, user)).toEqual([]);
  });

  it("refuses query parameters (there is no way to name another account)", async () => {
    const res = await credits("GET /v1/credits", uniqueUser(), { userId: "someone-else" });
    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({ code: "VALIDATION_FAILED", field: "userId" });
  });
});

describe("GET /v1/credits entitlements (issue 23)", () => {
  const SMALL_MODELS = [SONNET, "openai/gpt-5.2", "google/gemini-3-pro-preview", "mistralai/mistral-large-2512"];
  /** checked against the OpenAPI document (fx.call); the fixture's ledger has rate limits off */
  const checked = async (userId: string) => fx.call(fns.credits.route, { routeKey: "GET /v1/credits", token: await userToken(userId) });

  it("a free user: the small-tier models, opus locked behind plus, the free plan's limits", async () => {
    const user = uniqueUser("ent-free");
    const res = await checked(user);
    expect(res.status).toBe(200);
    expect(res.json.entitlements).toEqual({
      models: SMALL_MODELS,
      lockedModels: [{ model: OPUS, requiredPlan: "plus" }],
      // rate limits off in this ledger: no per-minute limit to show
      limits: { authorizePerMinute: null, largestReservation: 20_000, maxOpenHolds: 64 },
    });
    expect(await itemsOf(fx.client, fx.tableName, user)).toEqual([]); // still a read
  });

  it("the real function (AUTHORIZE_RATE_LIMIT_PER_MINUTE left at 600) shows the free plan's own 60 a minute", async () => {
    const res = await credits("GET /v1/credits", uniqueUser("ent-env"));
    expect(res.status).toBe(200);
    expect(res.json.entitlements.limits).toEqual({ authorizePerMinute: 60, largestReservation: 20_000, maxOpenHolds: 64 });
  });

  it("follows the account's plan: on plus every model is included, nothing locked, plus's limits", async () => {
    const user = uniqueUser("ent-plus");
    await changePlanSchedule(fx.deps.ledger, { userId: user, plan: "plus", interval: "month", periodStart: fx.deps.ledger.now() });
    const res = await checked(user);
    expect(res.json.plan).toBe("plus");
    expect(res.json.entitlements).toEqual({
      models: [...SMALL_MODELS, OPUS],
      lockedModels: [],
      limits: { authorizePerMinute: null, largestReservation: 100_000, maxOpenHolds: 64 },
    });
  });
});

describe("GET /v1/credits/history", () => {
  it("lists entries newest first in cursor pages", async () => {
    const user = uniqueUser();
    await chargeCalls(user, 3); // signup + 3 settles
    const first = await credits("GET /v1/credits/history", user, { limit: "2" });
    expect(first.status).toBe(200);
    expect(first.json.entries.map((e: { key: string }) => e.key)).toHaveLength(2);
    expect(first.json.entries[0]).toEqual({
      key: expect.stringMatching(/^settle#/),
      amount: -5,
      balanceAfter: 9_985,
      reason: "settle",
      createdAt: expect.any(String),
      refs: expect.objectContaining({ model: SONNET, inputTokens: 1000, outputTokens: 100 }),
    });
    expect(first.json.nextCursor).toEqual(expect.any(String));
    const second = await credits("GET /v1/credits/history", user, { limit: "2", cursor: first.json.nextCursor });
    expect(second.json.entries.map((e: { reason: string }) => e.reason)).toEqual(["settle", "signup"]);
    expect(second.json.nextCursor).toBeNull();
  });

  it("defaults to 20 entries", async () => {
    const user = uniqueUser();
    await chargeCalls(user, 21);
    const res = await credits("GET /v1/credits/history", user);
    expect(res.json.entries).toHaveLength(20);
    expect(res.json.nextCursor).not.toBeNull();
  });

  it.each([
    [{ limit: "0" }, "limit"],
    [{ limit: "101" }, "limit"],
    [{ limit: "ten" }, "limit"],
    [{ limit: "5,6" }, "limit"], // a repeated key, as API Gateway joins it
    [{ cursor: "x".repeat(65) }, "cursor"],
    [{ cursor: "bm90LWEtY3Vyc29y" }, "cursor"],
    [{ userId: "someone-else" }, "userId"],
  ])("refuses the query %o naming %s", async (query, field) => {
    const user = uniqueUser("bad-query");
    const res = await credits("GET /v1/credits/history", user, query);
    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({ code: "VALIDATION_FAILED", field });
    expect(await itemsOf(fx.client, fx.tableName, user)).toEqual([]);
  });
});

describe("credits auth", () => {
  it("refuses a service token with 403, and a missing or subject-less token with 401", async () => {
    const service = await invoke(fns.credits.handler, { routeKey: "GET /v1/credits", token: await serviceToken() });
    expect(service.status).toBe(403);
    expect(service.json.error.code).toBe("FORBIDDEN");
    const missing = await invoke(fns.credits.handler, { routeKey: "GET /v1/credits" });
    expect(missing.status).toBe(401);
    const claimSets: Array<Record<string, unknown>> = [{}, { sub: "" }, { sub: "has space" }, { sub: "x".repeat(129) }, { sub: 42 }];
    for (const claims of claimSets) {
      const res = await invoke(fns.credits.handler, { routeKey: "GET /v1/credits", token: await signToken(claims) });
      expect(res.status, JSON.stringify(claims)).toBe(401);
      expect(res.json).toEqual({ error: { code: "UNAUTHORIZED", message: "Missing or invalid credentials" } });
    }
  });

  it("answers 404 for a route this function does not serve", async () => {
    const res = await credits("GET /v1/credits/everyone", uniqueUser());
    expect(res.status).toBe(404);
  });
});
