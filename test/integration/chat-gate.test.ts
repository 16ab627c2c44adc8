import { beforeAll, describe, expect, it } from "vitest";
import { FUNCTIONS } from "../../lib/routes.js";
import { type EventOptions, invoke } from "../helpers/events.js";
import { STALE_RATE_COUNTERS_PRUNED_AT } from "../../lib/ledger/dynamo-ledger-store.js";
import { APP_URL, appFixture, itemsOf, SONNET, useAppFixture, useFunctions } from "../helpers/http.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { tableDigest } from "../reliability/harness.js";
import { serviceToken, unsignedToken, userToken } from "../helpers/tokens.js";

const logs = captureLogs();
const fx = useAppFixture();
const fns = useFunctions(fx);
let service: string;

beforeAll(async () => {
  service = await serviceToken();
});

/** Calls the real chat-gate handler (cold-started from env) as the chat backend. */
const gate = (options: Omit<EventOptions, "token"> & { token?: string }) =>
  invoke(fns.gate.handler, { token: service, ...options });
const authorizeBody = (userId: string, requestId = "r1", extra: Record<string, unknown> = {}) => ({
  userId,
  requestId,
  model: SONNET,
  inputTokens: 1000,
  maxOutputTokens: 1000,
  ...extra,
});

describe("POST /v1/gate/authorize", () => {
  it("reserves the call's maximum cost and answers the contract shape", async () => {
    const user = uniqueUser();
    const res = await gate({ routeKey: "POST /v1/gate/authorize", body: authorizeBody(user) });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({
      holdId: expect.stringMatching(/^hold_/),
      reserved: 18,
      balance: 10_000,
      available: 9_982,
      plan: "free",
    });
    expect(res.headers["content-type"]).toBe("application/json");
  });

  it("is idempotent on requestId: the same hold comes back and nothing more is reserved", async () => {
    const user = uniqueUser();
    const first = await gate({ routeKey: "POST /v1/gate/authorize", body: authorizeBody(user, "same") });
    const again = await gate({ routeKey: "POST /v1/gate/authorize", body: authorizeBody(user, "same") });
    expect(again.status).toBe(200);
    expect(again.json).toEqual(first.json);
    const view = await invoke(fns.credits.handler, { routeKey: "GET /v1/credits", token: await userToken(user) });
    expect(view.json).toMatchObject({ held: 18, available: 9_982 });
  });

  it("accepts a base64-encoded body", async () => {
    const res = await gate({ routeKey: "POST /v1/gate/authorize", body: authorizeBody(uniqueUser()), base64: true });
    expect(res.status).toBe(200);
    expect(res.json.reserved).toBe(18);
  });

  it("refuses with 402 INSUFFICIENT_CREDITS carrying required, balance and available, holding nothing", async () => {
    const user = uniqueUser();
    await gate({ routeKey: "POST /v1/gate/authorize", body: authorizeBody(user, "small") });
    const before = await itemsOf(fx.client, fx.tableName, user);
    const res = await gate({
      routeKey: "POST /v1/gate/authorize",
      body: authorizeBody(user, "huge", { model: SONNET, inputTokens: 0, maxOutputTokens: 1_000_000 }),
    });
    expect(res.status).toBe(402);
    expect(res.json).toEqual({
      error: {
        code: "INSUFFICIENT_CREDITS",
        message: expect.any(String),
        required: 15_000,
        balance: 10_000,
        available: 9_982,
      },
    });
    expect(await itemsOf(fx.client, fx.tableName, user)).toEqual(before);
  });

  it("refuses a first-seen user's unaffordable call with 402 and creates nothing", async () => {
    const user = uniqueUser("new");
    const res = await gate({
      routeKey: "POST /v1/gate/authorize",
      body: authorizeBody(user, "huge", { model: SONNET, inputTokens: 0, maxOutputTokens: 1_000_000 }),
    });
    expect(res.status).toBe(402);
    expect(res.json.error).toMatchObject({ code: "INSUFFICIENT_CREDITS", required: 15_000, balance: 10_000, available: 10_000 });
    expect(await itemsOf(fx.client, fx.tableName, user)).toEqual([]);
    // an affordable first call still creates the account with its bonus
    expect((await gate({ routeKey: "POST /v1/gate/authorize", body: authorizeBody(user, "small") })).status).toBe(200);
    expect((await itemsOf(fx.client, fx.tableName, user)).length).toBeGreaterThan(0);
  });

  it("refuses a requestId reused for a different call with 409 CONFLICT", async () => {
    const user = uniqueUser();
    await gate({ routeKey: "POST /v1/gate/authorize", body: authorizeBody(user, "dup") });
    const before = await tableDigest(fx.client, fx.tableName);
    const res = await gate({ routeKey: "POST /v1/gate/authorize", body: authorizeBody(user, "dup", { inputTokens: 5 }) });
    expect(res.status).toBe(409);
    expect(res.json.error).toMatchObject({ code: "CONFLICT", field: "requestId" });
    expect(await tableDigest(fx.client, fx.tableName)).toEqual(before); // every item of the table unchanged
  });

  it("refuses a hold beyond maxOpenHolds with 409 TOO_MANY_OPEN_HOLDS, writing nothing", async () => {
    const capped = await appFixture({ maxOpenHolds: 3 });
    const user = uniqueUser("capped");
    const call = (routeKey: string, body: unknown) => capped.call(fns.gate.route, { routeKey, body, token: service });
    const holds: string[] = [];
    for (const id of ["a", "b", "c"]) {
      const res = await call("POST /v1/gate/authorize", authorizeBody(user, id));
      expect(res.status).toBe(200);
      holds.push(res.json.holdId);
    }
    const before = await tableDigest(capped.client, capped.tableName);
    const refused = await call("POST /v1/gate/authorize", authorizeBody(user, "d"));
    expect(refused.status).toBe(409);
    expect(refused.json.error).toMatchObject({ code: "CONFLICT", reason: "TOO_MANY_OPEN_HOLDS" });
    expect(await tableDigest(capped.client, capped.tableName)).toEqual(before);
    // Closing one hold makes room again.
    expect((await call("POST /v1/gate/release", { holdId: holds[0] })).status).toBe(200);
    expect((await call("POST /v1/gate/authorize", authorizeBody(user, "d"))).status).toBe(200);
  });
});

describe("POST /v1/gate/settle and /v1/gate/release", () => {
  it("settle charges the true cost, releases the rest, and a second settle returns the first outcome", async () => {
    const user = uniqueUser();
    const { json: hold } = await gate({ routeKey: "POST /v1/gate/authorize", body: authorizeBody(user) });
    const settle = { holdId: hold.holdId, inputTokens: 1000, outputTokens: 200 };
    const res = await gate({ routeKey: "POST /v1/gate/settle", body: settle });
    expect(res.status).toBe(200);
    expect(res.json).toEqual({ holdId: hold.holdId, status: "settled", charged: 6, released: 12, balance: 9_994 });
    const again = await gate({ routeKey: "POST /v1/gate/settle", body: { ...settle, outputTokens: 999 } });
    expect(again.json).toEqual(res.json);
    const release = await gate({ routeKey: "POST /v1/gate/release", body: { holdId: hold.holdId } });
    expect(release.json).toMatchObject({ status: "settled", charged: 6, balance: 9_994 });
  });

  it("release returns the whole hold, exactly once", async () => {
    const user = uniqueUser();
    const { json: hold } = await gate({ routeKey: "POST /v1/gate/authorize", body: authorizeBody(user) });
    const res = await gate({ routeKey: "POST /v1/gate/release", body: { holdId: hold.holdId }, base64: true });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ status: "released", released: 18, balance: 10_000 });
    const settle = await gate({
      routeKey: "POST /v1/gate/settle",
      body: { holdId: hold.holdId, inputTokens: 10, outputTokens: 10 },
    });
    expect(settle.json).toMatchObject({ status: "released", charged: 0, balance: 10_000 });
  });

  it("answers 404 NOT_FOUND for a hold id that names no hold", async () => {
    const forged = `hold_${Buffer.from(JSON.stringify(["nobody", "r", "tag", 1, 10_000, SONNET, 18])).toString("base64url")}`;
    for (const routeKey of ["POST /v1/gate/settle", "POST /v1/gate/release"]) {
      for (const holdId of ["not-a-hold", forged]) {
        const body = routeKey.endsWith("settle") ? { holdId, inputTokens: 1, outputTokens: 1 } : { holdId };
        const res = await gate({ routeKey, body });
        expect(res.status, `${routeKey} ${holdId}`).toBe(404);
        expect(res.json.error.code).toBe("NOT_FOUND");
      }
    }
  });
});

describe("bad input: 400 naming the field, nothing written", () => {
  const user = uniqueUser("bad-input");
  const cases: Array<[string, Omit<EventOptions, "token">, string, string?]> = [
    ["non-JSON", { routeKey: "POST /v1/gate/authorize", body: "{not json" }, "body"],
    ["non-JSON base64", { routeKey: "POST /v1/gate/authorize", body: "{oops", base64: true }, "body"],
    ["no body", { routeKey: "POST /v1/gate/authorize" }, "body"],
    ["a JSON array", { routeKey: "POST /v1/gate/authorize", body: [] }, "body"],
    [
      "a __proto__ key",
      { routeKey: "POST /v1/gate/authorize", body: `{"__proto__":{"admin":true},${JSON.stringify(authorizeBody(user)).slice(1)}` },
      "body",
    ],
    ["a string count", { routeKey: "POST /v1/gate/authorize", body: authorizeBody(user, "r", { inputTokens: "100" }) }, "inputTokens"],
    ["a negative count", { routeKey: "POST /v1/gate/authorize", body: authorizeBody(user, "r", { inputTokens: -1 }) }, "inputTokens"],
    ["a fractional count", { routeKey: "POST /v1/gate/authorize", body: authorizeBody(user, "r", { maxOutputTokens: 1.5 }) }, "maxOutputTokens"],
    ["an absurd count", { routeKey: "POST /v1/gate/authorize", body: authorizeBody(user, "r", { maxOutputTokens: 1e9 }) }, "maxOutputTokens"],
    ["input over the cap", { routeKey: "POST /v1/gate/authorize", body: authorizeBody(user, "r", { inputTokens: 2_000_001 }) }, "inputTokens"],
    ["a missing model", { routeKey: "POST /v1/gate/authorize", body: authorizeBody(user, "r", { model: undefined }) }, "model"],
    ["a bad userId", { routeKey: "POST /v1/gate/authorize", body: authorizeBody("has space", "r") }, "userId"],
    ["an unknown field", { routeKey: "POST /v1/gate/authorize", body: authorizeBody(user, "r", { priority: "high" }) }, "priority"],
    [
      "an oversize body",
      { routeKey: "POST /v1/gate/authorize", body: authorizeBody(user, "r", { pad: "x".repeat(20_000) }) },
      "body",
    ],
    [
      "an oversize base64 body",
      { routeKey: "POST /v1/gate/authorize", body: authorizeBody(user, "r", { pad: "x".repeat(20_000) }), base64: true },
      "body",
    ],
    [
      "a query parameter",
      { routeKey: "POST /v1/gate/authorize", body: authorizeBody(user), query: { dryRun: "1" } },
      "dryRun",
    ],
    ["an unknown model", { routeKey: "POST /v1/gate/authorize", body: authorizeBody(user, "r", { model: "acme/gpt-9" }) }, "model", "UNKNOWN_MODEL"],
    ["settle: negative output", { routeKey: "POST /v1/gate/settle", body: { holdId: "hold_x", inputTokens: 1, outputTokens: -5 } }, "outputTokens"],
    ["settle: misspelt field", { routeKey: "POST /v1/gate/settle", body: { holdId: "hold_x", inputTokens: 1, outputToken: 5 } }, "outputTokens"],
    ["release: numeric holdId", { routeKey: "POST /v1/gate/release", body: { holdId: 42 } }, "holdId"],
    ["release: extra field", { routeKey: "POST /v1/gate/release", body: { holdId: "hold_x", force: true } }, "force"],
  ];

  it.each(cases)("%s", async (_name, options, field, code = "VALIDATION_FAILED") => {
    const res = await gate(options);
    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({ code, field });
    expect(res.json.error.message.toLowerCase()).toContain(field.toLowerCase());
  });

  it("wrote nothing for any of them", async () => {
    expect(await itemsOf(fx.client, fx.tableName, user)).toEqual([]);
    expect(await itemsOf(fx.client, fx.tableName, "has space")).toEqual([]);
  });
});

describe("gate auth", () => {
  const UNAUTHORIZED = { error: { code: "UNAUTHORIZED", message: "Missing or invalid credentials" } };

  it("refuses missing, malformed, expired, forged, unsigned and misaddressed tokens with a bare 401", async () => {
    const user = uniqueUser("auth");
    const bad: Record<string, string | undefined> = {
      missing: undefined,
      "not a JWT": "Bearer abc.def",
      "wrong scheme": `Basic ${Buffer.from("a:b").toString("base64")}`,
      expired: `Bearer ${await serviceToken({ expiresIn: -60 })}`,
      "not yet valid": `Bearer ${await serviceToken({ notBefore: 120 })}`,
      "no exp": `Bearer ${await serviceToken({ expiresIn: null })}`,
      "wrong signature": `Bearer ${await serviceToken({ secret: "another-secret-0123456789abcdef0123456789" })}`,
      "alg none": `Bearer ${unsignedToken({ sub: "chat-backend", scope: "gate" })}`,
      "alg not allowed (HS512)": `Bearer ${await serviceToken({ alg: "HS512" })}`,
      "wrong audience": `Bearer ${await serviceToken({ audience: "another-api" })}`,
      "wrong issuer": `Bearer ${await serviceToken({ issuer: "https://evil.example.com/" })}`,
    };
    for (const [name, authorization] of Object.entries(bad)) {
      const res = await invoke(fns.gate.handler, {
        routeKey: "POST /v1/gate/authorize",
        body: authorizeBody(user),
        ...(authorization ? { headers: { Authorization: authorization } } : {}),
      });
      expect(res.status, name).toBe(401);
      expect(res.json, name).toEqual(UNAUTHORIZED);
    }
    expect(await itemsOf(fx.client, fx.tableName, user)).toEqual([]);
  });

  it("checks credentials before the body: garbage without a token is 401, not 400", async () => {
    const res = await invoke(fns.gate.handler, { routeKey: "POST /v1/gate/authorize", body: "{garbage" });
    expect(res.status).toBe(401);
  });

  it("refuses user tokens with 403 FORBIDDEN on every gate route", async () => {
    const user = uniqueUser("user-on-gate");
    const token = await userToken(user);
    const bodies: Record<string, unknown> = {
      "POST /v1/gate/authorize": authorizeBody(user),
      "POST /v1/gate/settle": { holdId: "hold_x", inputTokens: 1, outputTokens: 1 },
      "POST /v1/gate/release": { holdId: "hold_x" },
    };
    for (const [routeKey, body] of Object.entries(bodies)) {
      const res = await gate({ routeKey, body, token });
      expect(res.status, routeKey).toBe(403);
      expect(res.json.error.code).toBe("FORBIDDEN");
    }
    expect(await itemsOf(fx.client, fx.tableName, user)).toEqual([]);
  });

  it("serves exactly the routes the function table (lib/routes) gives it", async () => {
    for (const routeKey of FUNCTIONS.chatGate.routes) {
      expect((await invoke(fns.gate.handler, { routeKey, body: {} })).status, routeKey).toBe(401);
    }
    for (const routeKey of FUNCTIONS.credits.routes) {
      // the credits reader also serves the public OpenAPI document and plans: only those need no token
      const expected = routeKey === "GET /v1/openapi.json" || routeKey === "GET /v1/plans" ? 200 : 401;
      expect((await invoke(fns.credits.handler, { routeKey })).status, routeKey).toBe(expected);
      expect((await invoke(fns.gate.handler, { routeKey })).status, routeKey).toBe(404);
    }
  });

  it("answers 404 for a route this function does not serve", async () => {
    const res = await gate({ routeKey: "POST /v1/gate/refund", body: {} });
    expect(res.status).toBe(404);
    expect(res.json.error.code).toBe("NOT_FOUND");
  });
});

/** A gate with a per-minute authorize limit, and one user's authorize calls through it. */
async function rateLimitedGate(perMinute: number, label: string) {
  const limited = await appFixture({ authorizeRateLimitPerMinute: perMinute });
  const user = uniqueUser(label);
  const call = (requestId: string) =>
    limited.call(fns.gate.route, { routeKey: "POST /v1/gate/authorize", body: authorizeBody(user, requestId), token: service });
  return { limited, user, call };
}

describe("rate limit on authorize", () => {
  it("answers 429 RATE_LIMITED with Retry-After past the per-minute limit, and admits again next minute", async () => {
    const { limited, call } = await rateLimitedGate(3, "busy");
    for (const id of ["a", "b", "c"]) expect((await call(id)).status).toBe(200);
    const before = await tableDigest(limited.client, limited.tableName);
    const refused = await call("d");
    expect(refused.status).toBe(429);
    expect(await tableDigest(limited.client, limited.tableName)).toEqual(before); // a refusal writes nothing
    expect(refused.json.error).toMatchObject({ code: "RATE_LIMITED", retryAfterSeconds: expect.any(Number) });
    expect(Number(refused.headers["retry-after"])).toBeGreaterThan(0);
    expect(Number(refused.headers["retry-after"])).toBeLessThanOrEqual(60);
    limited.clock.value += 60_000;
    expect((await call("d")).status).toBe(200);
  });

  it("costs no extra round trip: a steady-state authorize is one DynamoDB write", async () => {
    const { limited, call } = await rateLimitedGate(600, "steady");
    expect((await call("warm")).status).toBe(200); // first sight creates the account
    limited.requests.reset();
    expect((await call("steady")).status).toBe(200);
    expect(Object.fromEntries(limited.requests.counts)).toEqual({ UpdateItemCommand: 1 });
  });
});

describe("rate counters stay bounded", () => {
  it("prunes the counters a user leaves behind by skipping minutes, with one extra write now and then", async () => {
    const { limited, user, call } = await rateLimitedGate(600, "bursty");
    expect((await call("warm")).status).toBe(200);
    limited.requests.reset();
    const sizes: number[] = [];
    for (let burst = 0; burst < 30; burst++) {
      limited.clock.value += 2 * 60_000; // every other minute: the previous minute's counter is never there to drop
      expect((await call(`b${burst}`)).status).toBe(200);
      const account = await limited.deps.ledger.store.getAccount(user);
      sizes.push(Object.keys(account?.rateCounters ?? {}).length);
    }
    expect(Math.max(...sizes)).toBeLessThanOrEqual(STALE_RATE_COUNTERS_PRUNED_AT + 1);
    expect(sizes.at(-1)).toBeLessThan(30);
    // 30 authorizes (+ the 30 reads above) and a prune per eight left-behind counters
    expect(limited.requests.counts.get("UpdateItemCommand")).toBe(30 + Math.floor(30 / STALE_RATE_COUNTERS_PRUNED_AT));
  });
});

describe("HTTP plumbing", () => {
  it("allows CORS for APP_URL only, and sets security headers on successes and errors", async () => {
    const user = uniqueUser();
    const ok = await gate({ routeKey: "POST /v1/gate/authorize", body: authorizeBody(user), headers: { Origin: APP_URL } });
    expect(ok.headers["access-control-allow-origin"]).toBe(APP_URL);
    const evil = await gate({
      routeKey: "POST /v1/gate/authorize",
      body: authorizeBody(user),
      headers: { Origin: "https://evil.example.com" },
    });
    expect(evil.headers["access-control-allow-origin"]).toBeUndefined();
    const refused = await gate({ routeKey: "POST /v1/gate/release", body: {}, headers: { Origin: APP_URL } });
    expect(refused.status).toBe(400);
    for (const res of [ok, evil, refused]) {
      expect(res.headers["x-content-type-options"]).toBe("nosniff");
      expect(res.headers["strict-transport-security"]).toContain("max-age=");
      expect(res.headers["cache-control"]).toBe("no-store");
    }
    expect(refused.headers["access-control-allow-origin"]).toBe(APP_URL);
  });

  it("answers CORS preflights from APP_URL", async () => {
    const res = await invoke(fns.gate.handler, {
      routeKey: "OPTIONS /v1/gate/authorize",
      headers: { Origin: APP_URL, "Access-Control-Request-Method": "POST" },
    });
    expect(res.status).toBe(204);
    expect(res.headers["access-control-allow-origin"]).toBe(APP_URL);
    expect(res.headers["access-control-allow-methods"]).toContain("POST");
  });

  it("logs structured JSON lines that all carry the request id", async () => {
    const requestId = "api-gw-request-42";
    await gate({ routeKey: "POST /v1/gate/authorize", body: authorizeBody(uniqueUser()), requestId });
    await gate({ routeKey: "POST /v1/gate/authorize", body: "{bad", requestId: "api-gw-request-43" });
    const lines = logs.lines();
    expect(lines.length).toBeGreaterThanOrEqual(3);
    expect(lines.filter((line) => line.requestId === requestId).map((line) => line.message)).toContain("request done");
    expect(lines.find((line) => line.requestId === "api-gw-request-43" && line.message === "request refused")).toMatchObject({
      code: "VALIDATION_FAILED",
    });
    for (const line of lines) {
      expect(line.requestId).toMatch(/^api-gw-request-4[23]$/);
      expect(line.function_request_id).toEqual(expect.any(String));
    }
  });

  it("turns an unexpected failure into a bare 500 and logs the real error", async () => {
    const broken = await appFixture();
    const store = new Proxy(broken.deps.ledger.store, {
      get: (target, name, receiver) =>
        name === "reserve"
          ? () => Promise.reject(new Error("arn:aws:dynamodb:eu-west-1:123:table/secret exploded"))
          : Reflect.get(target, name, receiver),
    });
    broken.deps.ledger = { ...broken.deps.ledger, store };
    const res = await broken.call(fns.gate.route, {
      routeKey: "POST /v1/gate/authorize",
      body: authorizeBody(uniqueUser()),
      token: service,
    });
    expect(res.status).toBe(500);
    expect(res.json).toEqual({ error: { code: "INTERNAL", message: "Internal error" } });
    const failure = logs.lines().find((line) => line.message === "request failed");
    expect(failure).toMatchObject({ level: "ERROR", requestId: expect.any(String) });
    expect(JSON.stringify(failure)).toContain("secret exploded");
  });
});
