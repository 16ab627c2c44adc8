import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Catalog, catalog, validateCatalog } from "../../lib/catalog.js";
import { AppError, PlanRequiredError } from "../../lib/errors.js";
import { auditAccount, authorizeChat, changePlanSchedule, grantCredits, type LedgerDeps, settleChat } from "../../lib/ledger/index.js";
import { OPUS, SONNET, uniqueUser, useLedgerFixture } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";

/**
 * Issue 23: a plan's entitlements (models, per-call reservation, rate, open holds) are enforced
 * inside authorize's one conditional write, on the plan the account has when the write lands.
 */

captureLogs();
const small = { inputTokens: 100, maxOutputTokens: 100 };

async function refusal(promise: Promise<unknown>): Promise<AppError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!(error instanceof AppError)) throw new Error(`expected a refusal, got ${String(error)}`);
  return error;
}

async function fund(deps: LedgerDeps, userId: string, amount = 500_000) {
  await grantCredits(deps, { userId, key: `admin#fund-${userId}`, amount, bucket: "purchased", reason: "admin" });
}

/** The shipped catalog with other limits: small numbers a test can reach. */
function catalogWith(limits: Record<"free" | "plus" | "pro", Partial<Catalog["plans"][string]["entitlements"]>>): Catalog {
  const changed = structuredClone(catalog) as Catalog;
  for (const [plan, terms] of Object.entries(limits)) {
    const definition = changed.plans[plan];
    if (definition) definition.entitlements = { ...definition.entitlements, ...terms };
  }
  return validateCatalog(changed);
}

describe("plan entitlements in authorize's one write", () => {
  const fx = useLedgerFixture();

  it("a new free user's call for a model its plan lacks: 403 PLAN_REQUIRED naming plus, and nothing written", async () => {
    const userId = uniqueUser("ent-new");
    fx.requests.reset();
    const error = await refusal(authorizeChat(fx.deps, { userId, requestId: "r1", model: OPUS, ...small }));
    expect(error).toBeInstanceOf(PlanRequiredError);
    expect({ status: error.status, code: error.code, details: error.details }).toEqual({
      status: 403,
      code: "PLAN_REQUIRED",
      details: { model: OPUS, plan: "free", requiredPlan: "plus", reason: "MODEL_NOT_IN_PLAN", reserved: expect.any(Number) },
    });
    expect(Object.fromEntries(fx.requests.counts)).toEqual({ UpdateItemCommand: 1 }); // the one refused write, and no account created
    expect(await fx.deps.store.getAccount(userId)).toBeUndefined();
  });

  it("an upgrade lets the model in at once, in one write; a downgrade shuts it out at once, and the hold taken before settles", async () => {
    const userId = uniqueUser("ent-upgrade");
    await fund(fx.deps, userId);
    expect((await refusal(authorizeChat(fx.deps, { userId, requestId: "before", model: OPUS, ...small }))).code).toBe("PLAN_REQUIRED");
    await changePlanSchedule(fx.deps, { userId, plan: "plus", interval: "month", periodStart: fx.deps.now() });
    fx.requests.reset();
    const hold = await authorizeChat(fx.deps, { userId, requestId: "after", model: OPUS, ...small });
    expect(hold.plan).toBe("plus");
    expect(Object.fromEntries(fx.requests.counts)).toEqual({ UpdateItemCommand: 1 });
    await changePlanSchedule(fx.deps, { userId, plan: "free", interval: "month" });
    const shut = await refusal(authorizeChat(fx.deps, { userId, requestId: "downgraded", model: OPUS, ...small }));
    expect(shut.details).toMatchObject({ plan: "free", requiredPlan: "plus" });
    // the free plan's own models still go through
    await authorizeChat(fx.deps, { userId, requestId: "sonnet", model: SONNET, ...small });
    const outcome = await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 100, outputTokens: 50 });
    expect(outcome.status).toBe("settled");
    expect((await auditAccount(fx.deps, userId)).problems).toEqual([]);
  });

  it("a retried authorize of a hold admitted before a downgrade answers with that hold, not a 403", async () => {
    const userId = uniqueUser("ent-retry");
    await fund(fx.deps, userId);
    await changePlanSchedule(fx.deps, { userId, plan: "pro", interval: "month", periodStart: fx.deps.now() });
    const first = await authorizeChat(fx.deps, { userId, requestId: "same", model: OPUS, ...small });
    await changePlanSchedule(fx.deps, { userId, plan: "free", interval: "month" });
    const again = await authorizeChat(fx.deps, { userId, requestId: "same", model: OPUS, ...small });
    expect(again.holdId).toBe(first.holdId);
  });

  it("a call above the plan's largest reservation: 403 naming the plan that allows it; above every plan's: 400 before any write", async () => {
    const userId = uniqueUser("ent-large");
    await fund(fx.deps, userId);
    // 2,000,000 in + 1,000,000 out of a small-tier model: 21,000 credits, above free's 20,000
    const big = await refusal(authorizeChat(fx.deps, { userId, requestId: "big", model: SONNET, inputTokens: 2_000_000, maxOutputTokens: 1_000_000 }));
    expect(big.details).toEqual({ model: SONNET, plan: "free", requiredPlan: "plus", reason: "RESERVATION_OVER_PLAN_LIMIT", reserved: 21_000 });
    await changePlanSchedule(fx.deps, { userId, plan: "plus", interval: "month", periodStart: fx.deps.now() });
    await authorizeChat(fx.deps, { userId, requestId: "big", model: SONNET, inputTokens: 2_000_000, maxOutputTokens: 1_000_000 });
    const capped = { ...fx.deps, catalog: catalogWith({ free: { largestReservation: 10 }, plus: { largestReservation: 20 }, pro: { largestReservation: 30 } }) };
    fx.requests.reset();
    const none = await refusal(authorizeChat(capped, { userId, requestId: "huge", model: SONNET, inputTokens: 20_000, maxOutputTokens: 0 }));
    expect({ status: none.status, code: none.code }).toEqual({ status: 400, code: "VALIDATION_FAILED" });
    expect(fx.requests.total()).toBe(0);
  });

  it("each plan has its own per-minute rate and open-hold cap, and the operator's caps bound them all", async () => {
    const limited: LedgerDeps = {
      ...fx.deps,
      authorizeRateLimitPerMinute: 5,
      catalog: catalogWith({ free: { authorizePerMinute: 2, maxOpenHolds: 2 }, plus: { authorizePerMinute: 3 }, pro: { authorizePerMinute: 50, maxOpenHolds: 10 } }),
    };
    // start of a fresh minute on the test clock, so every call below counts in one minute
    fx.clock.value += 60_000 - (fx.clock.value % 60_000);
    const admitted = async (userId: string, calls: number) => {
      const codes: string[] = [];
      for (let i = 0; i < calls; i++) {
        await authorizeChat(limited, { userId, requestId: `c${i}`, model: SONNET, ...small }).then(
          () => codes.push("ok"),
          (error: AppError) => codes.push(error.code),
        );
      }
      return codes;
    };
    const free = uniqueUser("ent-rate-free");
    await fund(limited, free);
    expect(await admitted(free, 3)).toEqual(["ok", "ok", "RATE_LIMITED"]);
    const pro = uniqueUser("ent-rate-pro");
    await fund(limited, pro);
    await changePlanSchedule(limited, { userId: pro, plan: "pro", interval: "month", periodStart: limited.now() });
    // pro's 50 per minute is capped at the operator's 5; its hold cap (10) lets it hold more than free's 2
    expect(await admitted(pro, 6)).toEqual(["ok", "ok", "ok", "ok", "ok", "RATE_LIMITED"]);
    const holds = uniqueUser("ent-holds-free");
    await fund(limited, holds);
    fx.clock.value += 60_000;
    expect(await admitted(holds, 3)).toEqual(["ok", "ok", "RATE_LIMITED"]);
    fx.clock.value += 60_000;
    const capError = await refusal(authorizeChat(limited, { userId: holds, requestId: "third", model: SONNET, ...small }));
    expect({ code: capError.code, reason: capError.details.reason, message: capError.message }).toEqual({
      code: "CONFLICT",
      reason: "TOO_MANY_OPEN_HOLDS",
      message: "Too many open holds (2); settle or release some first",
    });
  });
});

describe("a downgrade mid-storm (fast-check: random storms, random moments of the downgrade)", () => {
  const fx = useLedgerFixture();

  it("no call that starts after the downgrade's write is admitted for a model the new plan lacks; every hold admitted before settles", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 10 }),
        fc.integer({ min: 0, max: 25 }),
        fc.constantFrom("plus", "pro"),
        fc.integer({ min: 0, max: 29 }),
        async (workers, downgradeAfterMs, from, dayOfPeriod) => {
          fx.clock.advanceDays(dayOfPeriod); // somewhere in a billing period
          const userId = uniqueUser("ent-storm");
          await fund(fx.deps, userId, 5_000_000);
          await changePlanSchedule(fx.deps, { userId, plan: from as "plus" | "pro", interval: "month", periodStart: fx.deps.now() });
          let stop = false;
          const calls: { startedAt: number; admitted: boolean; code?: string; holdId?: string }[] = [];
          let next = 0;
          const storm = Array.from({ length: workers }, async () => {
            while (!stop) {
              const startedAt = performance.now();
              const requestId = `s${next++}`;
              try {
                const hold = await authorizeChat(fx.deps, { userId, requestId, model: OPUS, ...small });
                calls.push({ startedAt, admitted: true, holdId: hold.holdId });
              } catch (error) {
                calls.push({ startedAt, admitted: false, code: (error as AppError).code });
              }
            }
          });
          await new Promise((resolve) => setTimeout(resolve, downgradeAfterMs));
          await changePlanSchedule(fx.deps, { userId, plan: "free", interval: "month" });
          const downgradedAt = performance.now();
          // storm on until each worker has made a call that started after the downgrade (or 5 s)
          while (calls.filter((call) => call.startedAt > downgradedAt).length < workers && performance.now() - downgradedAt < 5_000) {
            await new Promise((resolve) => setTimeout(resolve, 5));
          }
          stop = true;
          await Promise.all(storm);
          const late = calls.filter((call) => call.startedAt > downgradedAt);
          expect(late.length).toBeGreaterThan(0);
          expect(late.filter((call) => call.admitted)).toEqual([]);
          expect(new Set(late.map((call) => call.code))).toEqual(new Set(["PLAN_REQUIRED"]));
          for (const call of calls.filter((c) => c.admitted)) {
            expect((await settleChat(fx.deps, { holdId: call.holdId as string, inputTokens: 100, outputTokens: 10 })).status).toBe("settled");
          }
          expect((await auditAccount(fx.deps, userId)).problems).toEqual([]);
        },
      ),
      { numRuns: 12 },
    );
  }, 180_000);
});
