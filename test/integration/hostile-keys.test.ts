import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { BillingAccount } from "../../lib/billing/index.js";
import { createDynamoBillingStore } from "../../lib/billing/dynamo-billing-store.js";
import { InsufficientCreditsError } from "../../lib/errors.js";
import {
  auditAccount,
  authorizeChat,
  ensureAccount,
  grantCredits,
  releaseHold,
  settleChat,
} from "../../lib/ledger/index.js";
import { costOfCall } from "../../lib/pricing.js";
import { createDynamoScheduleStore } from "../../lib/sweep/dynamo-schedule-store.js";
import { runSweep } from "../../lib/sweep/run-sweep.js";
import { hostileIdArbitrary, LONGEST_ID, PROTOTYPE_NAMES } from "../helpers/hostile-ids.js";
import { uniqueUser, useLedgerFixture } from "../helpers/ledger.js";

const MODEL = "anthropic/claude-sonnet-4.5";
const plenty = () => 600_000;

describe("requestIds that are names every JavaScript object answers for", () => {
  const fx = useLedgerFixture();

  // Regression (red team): `__proto__` locked 9,000 credits forever (settle and release 404, the
  // sweep blind to it, the audit in drift) and turned later refusals into 500s; `constructor`,
  // `toString`, `valueOf` answered 409 "already used" instead of admitting or refusing.
  it.each(PROTOTYPE_NAMES)("%s: authorize, settle, audit and a later refusal behave as for any id", async (requestId) => {
    const userId = uniqueUser("proto");
    const hold = await authorizeChat(fx.deps, { userId, requestId, model: MODEL, inputTokens: 1000, maxOutputTokens: 400 });
    expect(hold.reserved).toBe(costOfCall(MODEL, 1000, 400));
    const account = await fx.deps.store.getAccount(userId);
    expect(Object.keys(account?.holds ?? {})).toEqual([requestId]);
    expect((await auditAccount(fx.deps, userId)).ok).toBe(true);

    // a retry of the same authorize is the same hold
    expect((await authorizeChat(fx.deps, { userId, requestId, model: MODEL, inputTokens: 1000, maxOutputTokens: 400 })).holdId).toBe(
      hold.holdId,
    );
    const settled = await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1000, outputTokens: 100 });
    expect(settled).toMatchObject({ status: "settled", charged: costOfCall(MODEL, 1000, 100) });
    expect((await auditAccount(fx.deps, userId)).ok).toBe(true);

    // an unaffordable call under the same name is refused as unaffordable (402), not 409 or 500
    await expect(
      authorizeChat(fx.deps, { userId, requestId, model: MODEL, inputTokens: 2_000_000, maxOutputTokens: 900_000 }),
    ).rejects.toBeInstanceOf(InsufficientCreditsError);
  });

  it("a `__proto__` hold can be released, and the sweep expires an abandoned one", async () => {
    const userId = uniqueUser("proto-release");
    const first = await authorizeChat(fx.deps, { userId, requestId: "__proto__", model: MODEL, inputTokens: 100, maxOutputTokens: 100 });
    expect(await releaseHold(fx.deps, { holdId: first.holdId })).toMatchObject({ status: "released", released: first.reserved });

    await authorizeChat(fx.deps, { userId, requestId: "__proto__", model: MODEL, inputTokens: 100, maxOutputTokens: 100 });
    await authorizeChat(fx.deps, { userId, requestId: "constructor", model: MODEL, inputTokens: 100, maxOutputTokens: 100 });
    fx.clock.value += fx.deps.holdTtlMs + 60_000;
    const summary = await runSweep(fx.deps, createDynamoScheduleStore(fx.client, fx.tableName), { remainingMs: plenty, concurrency: 4 });
    expect(summary.released).toBeGreaterThanOrEqual(2);
    const account = await fx.deps.store.getAccount(userId);
    expect(Object.keys(account?.holds ?? {})).toEqual([]);
    expect(account?.available).toBe(account?.balance);
    expect((await auditAccount(fx.deps, userId)).ok).toBe(true);
  });
});

describe("every map the account item carries keeps hostile keys as plain keys (fast-check, DynamoDB Local)", () => {
  const fx = useLedgerFixture();

  it("holds / holdSeq / holdBalance / outbox / outboxSeq / outboxBalance / rateCounters round-trip hostile requestIds through the real writes", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(hostileIdArbitrary(), { minLength: 1, maxLength: 4 }), async (requestIds) => {
        const userId = uniqueUser("maps");
        const deps = { ...fx.deps, authorizeRateLimitPerMinute: 1000 };
        await grantCredits(deps, { userId, key: "admin#seed", amount: 1_000_000, bucket: "purchased", reason: "admin" });
        const holds = [];
        for (const requestId of requestIds) {
          holds.push(await authorizeChat(deps, { userId, requestId, model: MODEL, inputTokens: 100, maxOutputTokens: 100 }));
        }
        const open = await deps.store.getAccount(userId);
        if (!open) throw new Error("no account");
        for (const map of [open.holds, open.holdSeq, open.holdBalance]) {
          expect(Object.keys(map).sort()).toEqual([...requestIds].sort());
          for (const requestId of requestIds) expect(Object.hasOwn(map, requestId)).toBe(true);
        }
        expect(Object.keys(open.rateCounters)).toHaveLength(1);
        // an entry landing first makes every settle take the contended (outbox) path
        await grantCredits(deps, { userId, key: "admin#bump", amount: 1, bucket: "purchased", reason: "admin" });
        for (const hold of holds) await settleChat(deps, { holdId: hold.holdId, inputTokens: 100, outputTokens: 10 });
        const settled = await deps.store.getAccount(userId);
        expect(Object.keys(settled?.holds ?? {})).toEqual([]);
        expect(Object.keys(settled?.outbox ?? {})).toEqual([]);
        const audit = await auditAccount(deps, userId);
        expect(audit.problems).toEqual([]);
      }),
      { numRuns: 25 },
    );
  });

  it("billing's extraSubscriptions / endedSubscriptions keep hostile subscription ids", async () => {
    const billing = createDynamoBillingStore(fx.client, fx.tableName);
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(hostileIdArbitrary(), { minLength: 2, maxLength: 4 }), async (ids) => {
        const userId = uniqueUser("billing-maps");
        await ensureAccount(fx.deps, userId);
        const [ended, ...extras] = ids as [string, ...string[]];
        let rev = 0;
        for (const id of extras) {
          const extra = { status: "active", priceId: "price_x", periodStart: 1, periodEnd: 2, cancelAtPeriodEnd: false, lastEventAt: 1, detectedAt: 1 };
          expect(await billing.putExtraSubscription(userId, id, extra, rev++)).toBe(true);
        }
        expect(await billing.endOtherSubscription(userId, ended, 5, rev++, false)).toBe(true);
        const account = (await fx.deps.store.getAccount(userId)) as BillingAccount;
        expect(Object.keys(account.extraSubscriptions ?? {}).sort()).toEqual([...extras].sort());
        expect(Object.keys(account.endedSubscriptions ?? {})).toEqual([ended]);
        expect(Object.getPrototypeOf(account.extraSubscriptions)).toBeNull();
      }),
      { numRuns: 20 },
    );
  });

  it("the longest allowed requestId is a hold like any other", async () => {
    const userId = uniqueUser("longest");
    const hold = await authorizeChat(fx.deps, { userId, requestId: LONGEST_ID, model: MODEL, inputTokens: 10, maxOutputTokens: 10 });
    expect(await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 10, outputTokens: 10 })).toMatchObject({ status: "settled" });
    expect((await auditAccount(fx.deps, userId)).ok).toBe(true);
  });
});
