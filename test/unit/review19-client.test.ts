import { describe, expect, it } from "vitest";
import { CreditgateError, createGateClient } from "../../client/src/index.js";

/**
 * Review of issue 19 (@creditgate/client). Scripted answers, no server, like test/unit/client.test.ts.
 */
function scriptedFetch(answers: (() => Response)[]) {
  const bodies: { url: string; body: string }[] = [];
  const fetch = async (request: Request) => {
    bodies.push({ url: new URL(request.url).pathname, body: await request.text() });
    const next = answers.shift();
    if (!next) throw new Error("no scripted answer left");
    return next();
  };
  return { fetch, bodies };
}
const json = (status: number, body: unknown) => () => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
const refusal = (status: number, code: string, details: Record<string, unknown> = {}) =>
  json(status, { error: { code, message: code.toLowerCase(), ...details } });
const HOLD = { holdId: "hold_1", reserved: 16, balance: 100, available: 84, plan: "free" };
const AUTHORIZE = { userId: "u1", requestId: "r1", model: "m", inputTokens: 1, maxOutputTokens: 1 };

describe("retry options", () => {
  // lib: client/src/retry.ts withRetry — `{ ...DEFAULTS, ...options }` lets an explicit `undefined`
  // override the default (exactOptionalPropertyTypes is off, and JS callers pass what their config has),
  // then `tried >= undefined` is never true: a retryable failure is retried forever, with
  // `Math.random() * NaN` (→ ~1 ms) between attempts when baseDelayMs is undefined too.
  it("an option left undefined (retry: { attempts: config.retries }) keeps the default of 5 attempts", async () => {
    const answers = Array.from({ length: 30 }, () => refusal(503, "INTERNAL"));
    const scripted = scriptedFetch(answers);
    const settings: { retries?: number; baseDelayMs?: number } = {}; // e.g. read from an env var that is not set
    const gate = createGateClient({
      baseUrl: "http://gate.invalid",
      token: "t",
      fetch: scripted.fetch,
      retry: { attempts: settings.retries, baseDelayMs: settings.baseDelayMs ?? 1, maxDelayMs: 2 },
    });
    await expect(gate.settle({ holdId: "hold_1", inputTokens: 1, outputTokens: 1 })).rejects.toBeInstanceOf(Error);
    // 5 attempts by default; it went through all 30 scripted 503s (and stopped only because the script ran out)
    expect(scripted.bodies.length).toBe(5);
  });
});

describe("meter() when settle fails after the model call ran", () => {
  // client/src/gate.ts meter: settle's error propagates as is. The model call ran (its result is
  // lost), the hold is neither settled nor released (credits stay reserved until the sweep expires
  // it, and the call is then never charged), and the thrown error does not say which hold it was,
  // so the caller cannot settle it later: the holdId only existed inside meter.
  it("a usage settle refuses (NaN tokens → sent as null → 400) leaves an open hold the caller cannot name", async () => {
    const scripted = scriptedFetch([
      json(200, HOLD),
      refusal(400, "VALIDATION_FAILED", { field: "outputTokens" }),
      json(200, { holdId: "hold_1", status: "released", charged: 0, released: 16, balance: 100 }),
    ]);
    const gate = createGateClient({ baseUrl: "http://gate.invalid", token: "t", fetch: scripted.fetch, retry: { baseDelayMs: 1 } });
    const error = await gate
      .meter(AUTHORIZE, async () => ({ inputTokens: 10, outputTokens: Number.NaN, text: "the model's reply" }))
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CreditgateError);
    // NaN went over the wire as null
    expect(JSON.parse(scripted.bodies[1]?.body ?? "{}")).toEqual({ holdId: "hold_1", inputTokens: 10, outputTokens: null });
    const released = scripted.bodies.some((call) => call.url === "/v1/gate/release");
    const named = JSON.stringify({ ...(error as CreditgateError).details, holdId: (error as { holdId?: unknown }).holdId }).includes("hold_1");
    // either meter ends the hold itself, or the error lets the caller do it
    expect({ released, named }).not.toEqual({ released: false, named: false });
  });

  it("a settle whose retries run out (5xx every time) also leaves the hold open and unnamed", async () => {
    const scripted = scriptedFetch([json(200, HOLD), ...Array.from({ length: 5 }, () => refusal(503, "INTERNAL"))]);
    const gate = createGateClient({ baseUrl: "http://gate.invalid", token: "t", fetch: scripted.fetch, retry: { baseDelayMs: 1 } });
    const error = await gate.meter(AUTHORIZE, async () => ({ inputTokens: 10, outputTokens: 5 })).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CreditgateError);
    expect((error as CreditgateError).status).toBe(503);
    // the caller is told nothing about hold_1: not on the error, not anywhere else
    const named = JSON.stringify({ ...(error as CreditgateError).details, holdId: (error as { holdId?: unknown }).holdId }).includes("hold_1");
    expect(named).toBe(true);
  });
});
