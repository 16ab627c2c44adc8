import { describe, expect, it } from "vitest";
import { auditAccount, authorizeChat, getBalance, releaseExpiredHolds, releaseHold, settleChat } from "../../lib/ledger/index.js";
import { costOfCall } from "../../lib/pricing.js";
import { SONNET, uniqueUser, useLedgerFixture } from "../helpers/ledger.js";


describe("a hold the sweep expired: the caller's first word stands", () => {
  const fx = useLedgerFixture();

  async function expiredHold(label: string) {
    const userId = uniqueUser(label);
    const hold = await authorizeChat(fx.deps, { userId, requestId: "r1", model: SONNET, inputTokens: 1_000, maxOutputTokens: 1_000 });
    fx.clock.value += fx.deps.holdTtlMs + 1;
    expect(await releaseExpiredHolds(fx.deps, userId)).toHaveLength(1);
    return { userId, hold };
  }

  // Regression (red team, this round): after the sweep expired a hold, the caller's release answered
  // "expired, charged 0", yet a later settle charged it and the release then answered "settled".
  it("a release after expiry is recorded: a later settle charges nothing and every answer is the same", async () => {
    const { userId, hold } = await expiredHold("late-release");
    const released = await releaseHold(fx.deps, { holdId: hold.holdId });
    expect(released).toMatchObject({ status: "expired", charged: 0, released: hold.reserved });
    expect(await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1_000, outputTokens: 1_000 })).toEqual(released);
    expect(await releaseHold(fx.deps, { holdId: hold.holdId })).toEqual(released);
    expect((await getBalance(fx.deps, userId)).balance).toBe(10_000);
    expect((await auditAccount(fx.deps, userId)).ok).toBe(true);
  });

  it("a settle after expiry (before any release) still records the true usage, and a later release answers it", async () => {
    const { userId, hold } = await expiredHold("late-settle");
    const cost = costOfCall(SONNET, 1_000, 1_000);
    const settled = await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1_000, outputTokens: 1_000 });
    expect(settled).toMatchObject({ status: "settled", charged: cost });
    expect(await releaseHold(fx.deps, { holdId: hold.holdId })).toEqual(settled);
    expect((await getBalance(fx.deps, userId)).balance).toBe(10_000 - cost);
  });

  it("a release and a settle racing after expiry agree on one outcome, and the ledger holds it", async () => {
    for (let round = 0; round < 8; round++) {
      const { userId, hold } = await expiredHold(`late-race-${round}`);
      const answers = await Promise.all([
        releaseHold(fx.deps, { holdId: hold.holdId }),
        settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1_000, outputTokens: 1_000 }),
        releaseHold(fx.deps, { holdId: hold.holdId }),
        settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1_000, outputTokens: 1_000 }),
      ]);
      const first = await releaseHold(fx.deps, { holdId: hold.holdId });
      // every answer is the one outcome that stands: a recorded release stops any settle, a settle that won first is what a release answers
      const charged = first.charged;
      for (const answer of answers) expect(answer).toEqual(first);
      expect((await getBalance(fx.deps, userId)).balance).toBe(10_000 - charged);
      expect((await auditAccount(fx.deps, userId)).ok).toBe(true);
    }
  });
});
