import { UpdateItemCommand } from "@aws-sdk/client-dynamodb";
import { marshall } from "@aws-sdk/util-dynamodb";
import OpenAI from "openai";
import { afterAll, describe, expect, it } from "vitest";
import { type PlanId, planOf } from "../../lib/catalog.js";
import { AppError } from "../../lib/errors.js";
import {
  auditAccount,
  authorizeChat,
  changePlanSchedule,
  grantCredits,
  type LedgerDeps,
  releaseExpiredHolds,
  releaseHold,
  settleChat,
} from "../../lib/ledger/index.js";
import { accountKey } from "../../lib/ledger/table-definition.js";
import { itemsOf, OPUS, SONNET, useAppFixture, useFunctions } from "../helpers/http.js";
import { onPaidPlan, uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { useProxyFixture } from "../helpers/proxy.js";
import { serviceToken, userToken } from "../helpers/tokens.js";

/**
 * Red team of issue 23 (plan entitlements), from outside. The first block holds the findings:
 * each asserts the correct behaviour and fails on the code as it was attacked. The "held" block
 * keeps the attacks that did not break anything, as regression coverage.
 */

captureLogs();
const fx = useAppFixture();
const fns = useFunctions(fx);
const small = { inputTokens: 100, maxOutputTokens: 100 };

/** The outcome of a ledger call: the result, or the refusal's status, code and details. */
async function outcome(promise: Promise<unknown>): Promise<{ ok: true; value: unknown } | { ok: false; status: number; code: string; details: Record<string, unknown>; message: string }> {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    if (!(error instanceof AppError)) throw error;
    return { ok: false, status: error.status, code: error.code, details: error.details as Record<string, unknown>, message: error.message };
  }
}

const fund = (deps: LedgerDeps, userId: string, amount = 500_000) =>
  grantCredits(deps, { userId, key: `admin#rt23-${userId}-${amount}`, amount, bucket: "purchased", reason: "admin" });

/** A store-level write of the account item's `plan` (undefined: the attribute removed), as a corrupt item or a plan retired from the catalog would leave it. */
async function storePlan(userId: string, plan: string | undefined) {
  const update =
    plan === undefined
      ? { UpdateExpression: "REMOVE #p", ExpressionAttributeNames: { "#p": "plan" } }
      : { UpdateExpression: "SET #p = :p", ExpressionAttributeNames: { "#p": "plan" }, ExpressionAttributeValues: marshall({ ":p": plan }) };
  await fx.client.send(new UpdateItemCommand({ TableName: fx.tableName, Key: marshall(accountKey(userId)), ...update }));
}

const getCredits = async (userId: string) => fx.call(fns.credits.route, { routeKey: "GET /v1/credits", token: await userToken(userId) });

describe("redteam 23 findings", () => {
  it.each(["Pro", "pro ", "plus\u00a0", "enterprise"])(
    "GET /v1/credits of an account whose stored plan %j is not a catalog plan answers no 5xx (it is a 500 'unknown plan' today)",
    async (plan) => {
      const userId = uniqueUser("rt23-unknown-plan");
      await fund(fx.deps.ledger, userId);
      await storePlan(userId, plan);
      const res = await getCredits(userId);
      expect(res.status).toBeLessThan(500);
    },
  );

  it("GET /v1/credits of an account with no plan attribute answers no 5xx", async () => {
    const userId = uniqueUser("rt23-no-plan");
    await fund(fx.deps.ledger, userId);
    await storePlan(userId, undefined);
    const res = await getCredits(userId);
    expect(res.status).toBeLessThan(500);
  });

  it.each(["__proto__", "toString", "constructor", "hasOwnProperty"])(
    "GET /v1/credits of an account whose stored plan is the prototype key %j answers within its documented contract (today: a 200 with no monthlyAllowance and a plan outside the enum)",
    async (plan) => {
      const userId = uniqueUser("rt23-proto-plan");
      await fund(fx.deps.ledger, userId);
      await storePlan(userId, plan);
      // fx.call checks the answer against the OpenAPI document and throws when it does not match
      const answered = await getCredits(userId).then(
        (res) => ({ status: res.status, monthlyAllowance: res.json.monthlyAllowance }),
        (error: Error) => ({ contractBroken: error.message.slice(0, 200) }),
      );
      expect(answered).not.toHaveProperty("contractBroken");
    },
  );

  it.each(["__proto__", "toString", "constructor", "hasOwnProperty"])("planOf(%j) refuses a prototype key as it refuses any unknown plan (today it returns Object.prototype's member)", (plan) => {
    expect(() => planOf(plan as PlanId)).toThrow(/unknown plan/);
  });

  it("an authorize refused for an account with no plan attribute answers a PLAN_REQUIRED that matches its documented body (today: no `plan`, and 'The undefined plan…')", async () => {
    const userId = uniqueUser("rt23-no-plan-gate");
    await fund(fx.deps.ledger, userId);
    await storePlan(userId, undefined);
    const answered = await fx
      .call(fns.gate.route, {
        routeKey: "POST /v1/gate/authorize",
        token: await serviceToken(),
        body: { userId, requestId: "r1", model: SONNET, ...small },
      })
      .then(
        (res) => ({ status: res.status, message: String(res.json.error?.message ?? "") }),
        (error: Error) => ({ contractBroken: error.message.slice(0, 300) }),
      );
    expect(answered).not.toHaveProperty("contractBroken");
    expect((answered as { message?: string }).message ?? "").not.toMatch(/undefined/);
  });

  it("a brand-new user's authorize refused by the operator's open-hold cap (MAX_OPEN_HOLDS 0) writes nothing (today: the account and its signup bonus are created, then 409)", async () => {
    const userId = uniqueUser("rt23-new-cap0");
    const capped: LedgerDeps = { ...fx.deps.ledger, maxOpenHolds: 0 };
    const result = await outcome(authorizeChat(capped, { userId, requestId: "r1", model: SONNET, ...small }));
    expect(result.ok).toBe(false);
    expect(await itemsOf(fx.client, fx.tableName, userId)).toEqual([]);
  });
});

describe("held", () => {
  it("a reservation of exactly free's 20,000 is admitted; 20,001 is 403 RESERVATION_OVER_PLAN_LIMIT naming plus; a new user's 20,001 writes nothing", async () => {
    const deps = fx.deps.ledger;
    const userId = uniqueUser("rt23-edge");
    await fund(deps, userId);
    // 2,000,000 in (6,000) + 933,334 out (14,000): 20,000; 933,367 out rounds to 14,001
    const at = await authorizeChat(deps, { userId, requestId: "at", model: SONNET, inputTokens: 2_000_000, maxOutputTokens: 933_334 });
    expect({ reserved: at.reserved, plan: at.plan }).toEqual({ reserved: 20_000, plan: "free" });
    const over = await outcome(authorizeChat(deps, { userId, requestId: "over", model: SONNET, inputTokens: 2_000_000, maxOutputTokens: 933_367 }));
    expect(over).toMatchObject({
      ok: false,
      status: 403,
      code: "PLAN_REQUIRED",
      details: { model: SONNET, plan: "free", requiredPlan: "plus", reason: "RESERVATION_OVER_PLAN_LIMIT", reserved: 20_001 },
    });
    const fresh = uniqueUser("rt23-edge-new");
    const refused = await outcome(authorizeChat(deps, { userId: fresh, requestId: "over", model: SONNET, inputTokens: 2_000_000, maxOutputTokens: 933_367 }));
    expect(refused).toMatchObject({ ok: false, status: 403, code: "PLAN_REQUIRED" });
    expect(await itemsOf(fx.client, fx.tableName, fresh)).toEqual([]);
  });

  it("requiredPlan never names a plan that would still refuse: opus at 105,000 credits sends free and plus to pro, and pro admits it", async () => {
    const deps = fx.deps.ledger;
    const userId = uniqueUser("rt23-required");
    await fund(deps, userId, 1_000_000);
    const biggest = { model: OPUS, inputTokens: 2_000_000, maxOutputTokens: 1_000_000 };
    expect(await outcome(authorizeChat(deps, { userId, requestId: "a", ...biggest }))).toMatchObject({
      status: 403,
      details: { plan: "free", requiredPlan: "pro", reason: "MODEL_NOT_IN_PLAN", reserved: 105_000 },
    });
    await onPaidPlan(deps, userId, "plus");
    expect(await outcome(authorizeChat(deps, { userId, requestId: "a", ...biggest }))).toMatchObject({
      status: 403,
      details: { plan: "plus", requiredPlan: "pro", reason: "RESERVATION_OVER_PLAN_LIMIT", reserved: 105_000 },
    });
    await onPaidPlan(deps, userId, "pro");
    expect((await authorizeChat(deps, { userId, requestId: "a", ...biggest })).reserved).toBe(105_000);
  });

  it("after a downgrade, an old hold's requestId gets that hold back and never a new hold or another model; once settled, released or expired it is judged by the new plan; the old holds still close and the ledger audits clean", async () => {
    const deps = fx.deps.ledger;
    const userId = uniqueUser("rt23-downgrade");
    await fund(deps, userId);
    await onPaidPlan(deps, userId, "pro");
    const h1 = await authorizeChat(deps, { userId, requestId: "h1", model: OPUS, ...small });
    const h2 = await authorizeChat(deps, { userId, requestId: "h2", model: OPUS, ...small });
    const h3 = await authorizeChat(deps, { userId, requestId: "h3", model: OPUS, ...small });
    const big = await authorizeChat(deps, { userId, requestId: "big", model: SONNET, inputTokens: 2_000_000, maxOutputTokens: 1_000_000 });
    await changePlanSchedule(deps, { userId, plan: "free", interval: "month" });

    expect((await authorizeChat(deps, { userId, requestId: "h1", model: OPUS, ...small })).holdId).toBe(h1.holdId);
    expect((await authorizeChat(deps, { userId, requestId: "big", model: SONNET, inputTokens: 2_000_000, maxOutputTokens: 1_000_000 })).holdId).toBe(big.holdId);
    expect(await outcome(authorizeChat(deps, { userId, requestId: "h1", model: SONNET, ...small }))).toMatchObject({ status: 409, code: "CONFLICT", details: { field: "requestId" } });
    expect(await outcome(authorizeChat(deps, { userId, requestId: "h1", model: OPUS, ...small }, { openHold: "refuse" }))).toMatchObject({ status: 409, code: "REQUEST_IN_PROGRESS" });

    expect((await settleChat(deps, { holdId: h1.holdId, inputTokens: 100, outputTokens: 100 })).status).toBe("settled");
    expect(await outcome(authorizeChat(deps, { userId, requestId: "h1", model: OPUS, ...small }))).toMatchObject({ status: 403, code: "PLAN_REQUIRED" });
    expect((await releaseHold(deps, { holdId: h2.holdId })).status).toBe("released");
    expect(await outcome(authorizeChat(deps, { userId, requestId: "h2", model: OPUS, ...small }))).toMatchObject({ status: 403, code: "PLAN_REQUIRED" });
    fx.clock.value += deps.holdTtlMs + 1;
    expect((await releaseExpiredHolds(deps, userId)).map((closed) => closed.status)).toEqual(["expired", "expired"]);
    expect(await outcome(authorizeChat(deps, { userId, requestId: "h3", model: OPUS, ...small }))).toMatchObject({ status: 403, code: "PLAN_REQUIRED" });
    expect((await settleChat(deps, { holdId: h3.holdId, inputTokens: 100, outputTokens: 100 })).status).toBe("settled"); // a late settle still charges
    expect((await auditAccount(deps, userId)).problems).toEqual([]);
  });

  it("per-plan rate limit exactly at the limit: free's 60th call is admitted and the 61st is 429; an upgrade in the same minute admits at once; a downgrade in it is 429 again (403 for opus)", async () => {
    const deps: LedgerDeps = { ...fx.deps.ledger, authorizeRateLimitPerMinute: 600 };
    fx.clock.value += 60_000 - (fx.clock.value % 60_000);
    const userId = uniqueUser("rt23-rate");
    await fund(deps, userId);
    const codes: string[] = [];
    for (let i = 0; i < 61; i++) {
      codes.push(await authorizeChat(deps, { userId, requestId: `r${i}`, model: SONNET, ...small }).then(() => "ok", (error: AppError) => error.code));
    }
    expect(codes.slice(0, 60).every((code) => code === "ok")).toBe(true);
    expect(codes[60]).toBe("RATE_LIMITED");
    await onPaidPlan(deps, userId, "plus");
    expect((await authorizeChat(deps, { userId, requestId: "up", model: OPUS, ...small })).plan).toBe("plus");
    await changePlanSchedule(deps, { userId, plan: "free", interval: "month" });
    expect(await outcome(authorizeChat(deps, { userId, requestId: "down", model: SONNET, ...small }))).toMatchObject({ status: 429, code: "RATE_LIMITED" });
    expect(await outcome(authorizeChat(deps, { userId, requestId: "down-opus", model: OPUS, ...small }))).toMatchObject({ status: 403, code: "PLAN_REQUIRED" });
  });

  it("operator caps of 1: the second call in a minute is 429 and the first one's retry still gets its hold; at an open-hold cap of 3 the 4th is 409 TOO_MANY_OPEN_HOLDS naming 3", async () => {
    fx.clock.value += 60_000 - (fx.clock.value % 60_000);
    const one: LedgerDeps = { ...fx.deps.ledger, maxOpenHolds: 1, authorizeRateLimitPerMinute: 1 };
    const userId = uniqueUser("rt23-one");
    const first = await authorizeChat(one, { userId, requestId: "x", model: SONNET, ...small });
    expect(await outcome(authorizeChat(one, { userId, requestId: "y", model: SONNET, ...small }))).toMatchObject({ status: 429, code: "RATE_LIMITED" });
    expect((await authorizeChat(one, { userId, requestId: "x", model: SONNET, ...small })).holdId).toBe(first.holdId);

    const three: LedgerDeps = { ...fx.deps.ledger, maxOpenHolds: 3 };
    const holder = uniqueUser("rt23-three");
    await fund(three, holder);
    for (let i = 0; i < 3; i++) await authorizeChat(three, { userId: holder, requestId: `h${i}`, model: SONNET, ...small });
    expect(await outcome(authorizeChat(three, { userId: holder, requestId: "h3", model: SONNET, ...small }))).toMatchObject({
      status: 409,
      code: "CONFLICT",
      details: { reason: "TOO_MANY_OPEN_HOLDS" },
      message: "Too many open holds (3); settle or release some first",
    });
  });

  it("plan flapping free/pro/plus under an opus storm: every admitted hold was admitted on a plan that includes opus (the plan of its own write), all settle, and the ledger audits clean", async () => {
    const deps = fx.deps.ledger;
    const userId = uniqueUser("rt23-flap");
    await fund(deps, userId, 5_000_000);
    let stop = false;
    let next = 0;
    const admitted: { plan: string; holdId: string }[] = [];
    const refusals = new Set<string>();
    const storm = Array.from({ length: 6 }, async () => {
      while (!stop) {
        const requestId = `f${next++}`;
        const result = await outcome(authorizeChat(deps, { userId, requestId, model: OPUS, ...small }));
        if (result.ok) admitted.push(result.value as { plan: string; holdId: string });
        // a refusal's code, with a 409's reason (the open-hold cap: nothing settles during the storm)
        else refusals.add(result.code === "CONFLICT" ? `CONFLICT:${String(result.details?.reason)}` : result.code);
      }
    });
    for (const plan of ["pro", "free", "plus", "free", "pro", "free", "plus", "free"] as const) {
      await changePlanSchedule(deps, { userId, plan, interval: "month", ...(plan === "free" ? {} : { periodStart: deps.now() }) });
      await new Promise((resolve) => setTimeout(resolve, 15));
    }
    stop = true;
    await Promise.all(storm);
    expect(admitted.length).toBeGreaterThan(0);
    expect(admitted.filter((hold) => hold.plan === "free")).toEqual([]);
    expect(refusals.has("PLAN_REQUIRED")).toBe(true);
    expect([...refusals].filter((code) => code !== "PLAN_REQUIRED" && code !== "CONFLICT:TOO_MANY_OPEN_HOLDS")).toEqual([]);
    for (const hold of admitted) expect((await settleChat(deps, { holdId: hold.holdId, inputTokens: 100, outputTokens: 10 })).status).toBe("settled");
    expect((await auditAccount(deps, userId)).problems).toEqual([]);
    // the last write put the account on free: opus is refused now
    expect(await outcome(authorizeChat(deps, { userId, requestId: "after", model: OPUS, ...small }))).toMatchObject({ status: 403, code: "PLAN_REQUIRED" });
  });

  it("a brand-new user's concurrent first calls (opus refused, sonnet admitted) create one account, write nothing for the refusals, and no 5xx", async () => {
    const deps = fx.deps.ledger;
    const userId = uniqueUser("rt23-first");
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) => outcome(authorizeChat(deps, { userId, requestId: `n${i}`, model: i % 2 ? OPUS : SONNET, ...small }))),
    );
    expect(results.map((result) => (result.ok ? "ok" : result.code))).toEqual(["ok", "PLAN_REQUIRED", "ok", "PLAN_REQUIRED", "ok", "PLAN_REQUIRED", "ok", "PLAN_REQUIRED"]);
    const account = await deps.store.getAccount(userId);
    expect(Object.keys(account?.holds ?? {}).sort()).toEqual(["n0", "n2", "n4", "n6"]);
    expect(account?.balance).toBe(10_000);
    expect((await auditAccount(deps, userId)).problems).toEqual([]);
  });

  // A product choice after the red team's round (docs/entitlements.md): an account whose stored plan the
  // catalog does not have (a retired plan, a missing or corrupt attribute) is served as the free plan —
  // by authorize's condition, GET /v1/credits and the 403 alike — rather than refused every model.
  it.each(["__proto__", "toString", "constructor", "Pro", "pro ", undefined])("an account whose stored plan is %j is served as free: sonnet admitted, opus 403 naming free and plus", async (plan) => {
    const deps = fx.deps.ledger;
    const userId = uniqueUser("rt23-closed");
    await fund(deps, userId);
    await storePlan(userId, plan);
    const before = await deps.store.getAccount(userId);
    const sonnet = await authorizeChat(deps, { userId, requestId: "r0", model: SONNET, ...small });
    expect(sonnet.reserved).toBeGreaterThan(0);
    expect(await outcome(authorizeChat(deps, { userId, requestId: "r1", model: OPUS, ...small }))).toMatchObject({
      ok: false,
      status: 403,
      code: "PLAN_REQUIRED",
      details: { plan: "free", requiredPlan: "plus" },
    });
    expect((await deps.store.getAccount(userId))?.available).toBe((before?.available ?? 0) - sonnet.reserved);
    const view = await getCredits(userId);
    expect({ status: view.status, plan: view.json.plan, locked: view.json.entitlements.lockedModels }).toEqual({
      status: 200,
      plan: "free",
      locked: [{ model: OPUS, requiredPlan: "plus" }],
    });
  });
});

describe("held: through the proxy (openai SDK)", () => {
  const px = useProxyFixture();
  afterAll(() => px.close());

  it("look-alike and prototype model names are 400 model_not_found, not a plan refusal; a free user's largest small-tier call (n=8) goes through; plus's opus at 1M output goes through", async () => {
    const userId = uniqueUser("rt23-proxy");
    await grantCredits(px.ledger.deps, { userId, key: "admin#rt23-proxy", amount: 500_000, bucket: "purchased", reason: "admin" });
    const openai = new OpenAI({ apiKey: await userToken(userId), baseURL: px.baseUrl, maxRetries: 0 });
    const ask = (body: Record<string, unknown>) =>
      openai.chat.completions.create({ messages: [{ role: "user", content: "Hello" }], ...body } as never).then(
        () => ({ status: 200 }),
        (error: { status?: number; code?: string }) => ({ status: error.status, code: error.code }),
      );
    for (const model of ["anthropic/claude-opus-4.5 ", "Anthropic/Claude-Opus-4.5", "anthropic/claude-opus-4.5\u200b", "__proto__", "toString"]) {
      expect(await ask({ model })).toEqual({ status: 400, code: "model_not_found" });
    }
    expect(await ask({ model: SONNET, max_tokens: 125_000, n: 8 })).toEqual({ status: 200 });
    expect(await ask({ model: OPUS, max_tokens: 50 })).toEqual({ status: 403, code: "plan_required" });
    await changePlanSchedule(px.ledger.deps, { userId, plan: "plus", interval: "month", periodStart: px.ledger.deps.now() });
    expect(await ask({ model: OPUS, max_tokens: 1_000_000 })).toEqual({ status: 200 });
  });
});
