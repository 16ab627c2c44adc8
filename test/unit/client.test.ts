import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  CreditgateError,
  createGateClient,
  createUserClient,
  getPlans,
  InsufficientCreditsError,
  PlanRequiredError,
} from "../../client/src/index.js";

/** A fetch that answers from a script, one answer per request, recording the bodies it was sent. */
function scriptedFetch(answers: (() => Response)[]) {
  const bodies: string[] = [];
  const fetch = async (request: Request) => {
    bodies.push(await request.text());
    const next = answers.shift();
    if (!next) throw new Error("no scripted answer left");
    return next();
  };
  return { fetch, bodies };
}

const json = (status: number, body: unknown) => () => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
const refusal = (status: number, code: string, details: Record<string, unknown> = {}) =>
  json(status, { error: { code, message: code.toLowerCase(), ...details } });
const dropped = () => {
  throw new TypeError("fetch failed");
};
const HOLD = { holdId: "hold_1", reserved: 16, balance: 100, available: 84, plan: "free" };
const AUTHORIZE = { userId: "u1", requestId: "r1", model: "m", inputTokens: 1, maxOutputTokens: 1 };

const gateWith = (answers: (() => Response)[]) => {
  const scripted = scriptedFetch(answers);
  const gate = createGateClient({ baseUrl: "http://gate.invalid/", token: "t", fetch: scripted.fetch, retry: { attempts: 4, baseDelayMs: 1 } });
  return { gate, bodies: scripted.bodies };
};

describe("@creditgate/client retries (scripted answers, no server)", () => {
  it("retries authorize on a network error, a 5xx and a retryable 409, with the same body", async () => {
    const { gate, bodies } = gateWith([
      dropped,
      refusal(503, "INTERNAL"),
      refusal(409, "CONFLICT", { retryable: true }),
      json(200, HOLD),
    ]);
    expect(await gate.authorize(AUTHORIZE)).toEqual(HOLD);
    expect(bodies).toHaveLength(4);
    expect(new Set(bodies)).toEqual(new Set([JSON.stringify(AUTHORIZE)]));
  });

  it("never retries another 4xx (a 409 without retryable, a 400, a 429) and gives up after the attempts", async () => {
    for (const answer of [refusal(409, "CONFLICT", { reason: "TOO_MANY_OPEN_HOLDS" }), refusal(400, "VALIDATION_FAILED"), refusal(429, "RATE_LIMITED")]) {
      const { gate, bodies } = gateWith([answer, json(200, HOLD)]);
      await expect(gate.authorize(AUTHORIZE)).rejects.toBeInstanceOf(CreditgateError);
      expect(bodies).toHaveLength(1);
    }
    const { gate, bodies } = gateWith([dropped, dropped, dropped, dropped, json(200, HOLD)]);
    await expect(gate.settle({ holdId: "hold_1", inputTokens: 1, outputTokens: 1 })).rejects.toThrow(TypeError);
    expect(bodies).toHaveLength(4);
  });

  it("turns a 402 into InsufficientCreditsError with the details", async () => {
    const { gate } = gateWith([refusal(402, "INSUFFICIENT_CREDITS", { required: 30, balance: 10, available: 5 })]);
    const error = await gate.authorize(AUTHORIZE).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(InsufficientCreditsError);
    expect(error).toMatchObject({ status: 402, required: 30, balance: 10, available: 5 });
  });

  it("turns a 403 PLAN_REQUIRED into PlanRequiredError with the plan to upgrade to, not retried; meter() never runs the call", async () => {
    const planRequired = refusal(403, "PLAN_REQUIRED", { model: "m", plan: "free", requiredPlan: "plus", reason: "MODEL_NOT_IN_PLAN", reserved: 16 });
    const { gate, bodies } = gateWith([planRequired, json(200, HOLD)]);
    let ran = false;
    const error = await gate
      .meter(AUTHORIZE, async () => {
        ran = true;
        return { inputTokens: 1, outputTokens: 1 };
      })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(PlanRequiredError);
    expect(error).toBeInstanceOf(CreditgateError);
    expect(error).toMatchObject({ status: 403, code: "PLAN_REQUIRED", model: "m", plan: "free", requiredPlan: "plus", reason: "MODEL_NOT_IN_PLAN", reserved: 16 });
    expect(ran).toBe(false);
    expect(bodies).toHaveLength(1);
    // a plain 403 FORBIDDEN stays a CreditgateError
    const forbidden = await gateWith([refusal(403, "FORBIDDEN")]).gate.authorize(AUTHORIZE).catch((caught: unknown) => caught);
    expect(forbidden).not.toBeInstanceOf(PlanRequiredError);
    expect(forbidden).toMatchObject({ status: 403, code: "FORBIDDEN" });
  });

  it("meter() keeps a given requestId and releases (then rethrows) when the function throws", async () => {
    const { gate, bodies } = gateWith([json(200, HOLD), json(200, { holdId: "hold_1", status: "released", charged: 0, released: 16, balance: 100 })]);
    const failure = new Error("model down");
    await expect(gate.meter({ ...AUTHORIZE, requestId: "mine" }, () => Promise.reject(failure))).rejects.toBe(failure);
    expect(JSON.parse(bodies[0] as string).requestId).toBe("mine");
    expect(JSON.parse(bodies[1] as string)).toEqual({ holdId: "hold_1" });
  });
});

describe("@creditgate/client getPlans (public, scripted answers)", () => {
  const PLANS = {
    plans: [
      {
        id: "free",
        rank: 0,
        paid: false,
        intervals: [],
        monthlyAllowance: 10_000,
        models: ["m-small"],
        limits: { authorizePerMinute: 60, largestReservation: 20_000, maxOpenHolds: 64 },
      },
    ],
    packs: [{ id: "starter", credits: 50_000 }],
  };
  /** a fetch answering from a script, recording each request's method, URL and Authorization header */
  function recordingFetch(answer: () => Response) {
    const seen: { method: string; url: string; authorization: string | null }[] = [];
    const fetch = async (request: Request) => {
      seen.push({ method: request.method, url: request.url, authorization: request.headers.get("authorization") });
      return answer();
    };
    return { fetch, seen };
  }

  it("GETs /v1/plans under the base URL without any Authorization header, and answers the body", async () => {
    const { fetch, seen } = recordingFetch(json(200, PLANS));
    expect(await getPlans({ baseUrl: "http://api.invalid/", fetch })).toEqual(PLANS);
    expect(seen).toEqual([{ method: "GET", url: "http://api.invalid/v1/plans", authorization: null }]);
    // the user client, by contrast, sends its token
    const user = recordingFetch(json(200, {}));
    await createUserClient({ baseUrl: "http://api.invalid", token: "t", fetch: user.fetch }).credits();
    expect(user.seen[0]?.authorization).toBe("Bearer t");
  });

  it("throws the contract's error (not retried): a 400 is one request, a CreditgateError", async () => {
    const { fetch, seen } = recordingFetch(refusal(400, "VALIDATION_FAILED", { field: "plan" }));
    const error = await getPlans({ baseUrl: "http://api.invalid", fetch }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(CreditgateError);
    expect(error).toMatchObject({ status: 400, code: "VALIDATION_FAILED", details: { field: "plan" } });
    expect(seen).toHaveLength(1);
  });
});

describe("@creditgate/client as a package", () => {
  it("builds on its own (ESM + declarations) from client/src alone: no server code reachable", () => {
    const outDir = mkdtempSync(join(tmpdir(), "creditgate-client-"));
    try {
      // rootDir is client/src: an import of anything outside it (lib/, test/) fails the build
      const tsc = spawnSync(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "client/tsconfig.build.json", "--outDir", outDir], {
        encoding: "utf8",
        timeout: 120_000,
      });
      expect(tsc.stdout + tsc.stderr).toBe("");
      expect(tsc.status).toBe(0);
      expect(existsSync(join(outDir, "index.js"))).toBe(true);
      expect(existsSync(join(outDir, "index.d.ts"))).toBe(true);
    } finally {
      rmSync(outDir, { recursive: true, force: true });
    }
  });
});
