import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { MODEL_IDS } from "../../lib/catalog.js";
import { NotFoundError } from "../../lib/errors.js";
import {
  auditAccount,
  authorizeChat,
  grantCredits,
  listHistory,
  releaseExpiredHolds,
  releaseHold,
  settleChat,
} from "../../lib/ledger/index.js";
import { decodeHoldId, encodeHoldId, type HoldRef } from "../../lib/ledger/hold-id.js";
import { costOfCall } from "../../lib/pricing.js";
import { OPUS, onPaidPlan, SONNET, uniqueUser, useLedgerFixture } from "../helpers/ledger.js";


const forge = (holdId: string, change: Partial<HoldRef>) => {
  const ref = decodeHoldId(holdId);
  if (!ref) throw new Error("not a hold id");
  return encodeHoldId({ ...ref, ...change });
};

describe("nothing in a hold id is trusted", () => {
  const fx = useLedgerFixture();

  // Regression (red team): after the sweep expired an opus hold, settling with the id re-encoded to
  // say sonnet charged 330 instead of 1,650 for the same tokens, and the ledger recorded sonnet.
  it("a late settle is priced by the model the hold was reserved for, whatever the id says", async () => {
    const userId = uniqueUser("late-model");
    await onPaidPlan(fx.deps, userId);
    const hold = await authorizeChat(fx.deps, { userId, requestId: "r1", model: OPUS, inputTokens: 10_000, maxOutputTokens: 20_000 });
    fx.clock.value += fx.deps.holdTtlMs + 1;
    expect(await releaseExpiredHolds(fx.deps, userId)).toHaveLength(1);
    const forged = forge(hold.holdId, { model: SONNET });
    const outcome = await settleChat(fx.deps, { holdId: forged, inputTokens: 10_000, outputTokens: 20_000 });
    expect(outcome).toMatchObject({ status: "settled", charged: costOfCall(OPUS, 10_000, 20_000) });
    const [entry] = (await listHistory(fx.deps, { userId, limit: 1 })).entries;
    expect(entry?.refs.model).toBe(OPUS);
    expect((await auditAccount(fx.deps, userId)).ok).toBe(true);
  });

  // Regression (red team): a settle whose id said balance 987654321 wrote balanceAfter 987654312
  // while the real balance was 9,991; the audit reported drift on that account forever.
  it("a forged balance never reaches the ledger", async () => {
    const userId = uniqueUser("forged-balance");
    const hold = await authorizeChat(fx.deps, { userId, requestId: "r1", model: SONNET, inputTokens: 1_000, maxOutputTokens: 1_000 });
    const forged = forge(hold.holdId, { balance: 987_654_321 });
    const outcome = await settleChat(fx.deps, { holdId: forged, inputTokens: 1_000, outputTokens: 300 });
    const cost = costOfCall(SONNET, 1_000, 300);
    expect(outcome).toMatchObject({ status: "settled", charged: cost, balance: 10_000 - cost });
    const [entry] = (await listHistory(fx.deps, { userId, limit: 1 })).entries;
    expect(entry?.balanceAfter).toBe(10_000 - cost);
    expect((await auditAccount(fx.deps, userId)).ok).toBe(true);
    // the real id answers the same first outcome
    expect(await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1_000, outputTokens: 300 })).toEqual({
      ...outcome,
      holdId: hold.holdId,
    });
  });

  // Regression (red team, this round): a seq of 2^53−1 or a balance of −(2^53−1) made settle
  // answer 500 (the SDK refused seq + 1 and balance − cost past the safe-integer range).
  it("ids with numbers past any real hold's answer 404, and the real id still settles", async () => {
    const userId = uniqueUser("extreme");
    const hold = await authorizeChat(fx.deps, { userId, requestId: "r1", model: SONNET, inputTokens: 1_000, maxOutputTokens: 1_000 });
    for (const lie of [{ seq: 2 ** 53 - 1 }, { balance: -(2 ** 53 - 1) }, { balance: 2 ** 53 - 1 }, { reserved: 2 ** 53 - 1 }, { seq: 1e12 + 1 }]) {
      await expect(settleChat(fx.deps, { holdId: forge(hold.holdId, lie), inputTokens: 500, outputTokens: 500 }), JSON.stringify(lie)).rejects.toBeInstanceOf(
        NotFoundError,
      );
      await expect(releaseHold(fx.deps, { holdId: forge(hold.holdId, lie) }), JSON.stringify(lie)).rejects.toBeInstanceOf(NotFoundError);
    }
    expect(await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 500, outputTokens: 500 })).toMatchObject({
      status: "settled",
      charged: costOfCall(SONNET, 500, 500),
    });
    expect((await auditAccount(fx.deps, userId)).ok).toBe(true);
  });

  const FIELDS = ["userId", "requestId", "tag", "seq", "balance", "model", "reserved"] as const;
  const PATHS = ["fast", "contended", "late", "release", "sweep-then-settle"] as const;

  it("every field forged on every path answers the real hold's outcome or 404, and the ledger is the real hold's (fast-check)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...FIELDS),
        fc.constantFrom(...PATHS),
        fc.constantFrom(...MODEL_IDS),
        fc.integer({ min: 0, max: 5_000 }),
        fc.integer({ min: 0, max: 2_000 }),
        fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constantFrom(987_654_321, -1_000_000, 2 ** 40, 2 ** 53 - 1, -(2 ** 53 - 1))),
        async (field, path, model, inputTokens, outputTokens, numberTweak) => {
          const userId = uniqueUser("forge");
          const neighbour = uniqueUser("forge-other");
          await grantCredits(fx.deps, { userId, key: "seed", amount: 500_000, bucket: "purchased", reason: "admin" });
          await grantCredits(fx.deps, { userId: neighbour, key: "seed", amount: 500_000, bucket: "purchased", reason: "admin" });
          // on a plan with every model, so the random model is always admitted
          await onPaidPlan(fx.deps, userId);
          await onPaidPlan(fx.deps, neighbour);
          const chat = { requestId: "shared-id", model, inputTokens: 5_000, maxOutputTokens: 2_000 };
          const real = await authorizeChat(fx.deps, { userId, ...chat });
          // forgeries that name a real, other hold: the same requestId of another user, another requestId of this user
          await authorizeChat(fx.deps, { userId: neighbour, ...chat });
          await authorizeChat(fx.deps, { userId, ...chat, requestId: "other-id" });
          const ref = decodeHoldId(real.holdId) as HoldRef;
          const forgedValue: Partial<HoldRef> = {
            userId: { userId: neighbour },
            requestId: { requestId: "other-id" },
            tag: { tag: `${ref.tag}x`.slice(-12) },
            seq: { seq: Math.max(0, ref.seq + numberTweak) },
            balance: { balance: ref.balance + numberTweak },
            model: { model: MODEL_IDS.find((candidate) => candidate !== ref.model) as string },
            reserved: { reserved: Math.max(0, ref.reserved + numberTweak) },
          }[field];
          const forged = encodeHoldId({ ...ref, ...forgedValue });

          if (path === "contended") await grantCredits(fx.deps, { userId, key: "bump", amount: 1, bucket: "purchased", reason: "admin" });
          if (path === "late" || path === "sweep-then-settle") {
            fx.clock.value += fx.deps.holdTtlMs + 1;
            await releaseExpiredHolds(fx.deps, userId);
            await releaseExpiredHolds(fx.deps, neighbour);
          }
          const before = { user: await fx.deps.store.getAccount(userId), neighbour: await fx.deps.store.getAccount(neighbour) };
          const act = (holdId: string) =>
            path === "release" ? releaseHold(fx.deps, { holdId }) : settleChat(fx.deps, { holdId, inputTokens, outputTokens });
          const answer = await act(forged).catch((error: unknown) => {
            if (error instanceof NotFoundError) return "404" as const;
            throw error;
          });
          const afterForged = { user: await fx.deps.store.getAccount(userId), neighbour: await fx.deps.store.getAccount(neighbour) };
          // the neighbour is never touched by a forgery of this user's hold
          expect(afterForged.neighbour?.balance).toBe(before.neighbour?.balance);
          expect(afterForged.neighbour?.available).toBe(before.neighbour?.available);
          if (answer === "404") {
            expect(afterForged.user?.seq).toBe(before.user?.seq);
            expect(afterForged.user?.available).toBe(before.user?.available);
          }
          // the real id then answers what the real hold does: the first outcome if the forgery closed it
          const truth = await act(real.holdId);
          if (answer !== "404") expect(answer).toEqual({ ...truth, holdId: forged });
          const expectedCharge = path === "release" ? 0 : costOfCall(model, inputTokens, outputTokens);
          expect(truth.charged).toBe(expectedCharge);
          const final = await fx.deps.store.getAccount(userId);
          expect(final?.balance).toBe(500_000 + 10_000 - expectedCharge - (path === "contended" ? -1 : 0));
          expect((await auditAccount(fx.deps, userId)).problems).toEqual([]);
          expect((await auditAccount(fx.deps, neighbour)).problems).toEqual([]);
        },
      ),
      { numRuns: 50 },
    );
  }, 180_000);
});
