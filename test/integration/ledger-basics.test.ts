import { describe, expect, it } from "vitest";
import {
  auditAccount,
  authorizeChat,
  ensureAccount,
  getBalance,
  grantCredits,
  listHistory,
  releaseHold,
  settleChat,
} from "../../lib/ledger/index.js";
import { SONNET, uniqueUser, useLedgerFixture } from "../helpers/ledger.js";

const fx = useLedgerFixture();
/** A chat of 1,000 tokens in and at most 1,000 out: 18 credits reserved (3 + 15). */
const authorizeSonnet = (userId: string) =>
  authorizeChat(fx.deps, { userId, requestId: "r1", model: SONNET, inputTokens: 1000, maxOutputTokens: 1000 });

describe("ledger basics", () => {
  it("gives the signup bonus once on first sight", async () => {
    const user = uniqueUser();
    await ensureAccount(fx.deps, user);
    await ensureAccount(fx.deps, user);
    const view = await getBalance(fx.deps, user);
    expect(view.balance).toBe(10_000);
    expect(view.plan).toBe("free");
    const history = await listHistory(fx.deps, { userId: user });
    expect(history.entries.map((e) => e.key)).toEqual(["signup"]);
  });

  it("authorizes, settles and records the true cost", async () => {
    const user = uniqueUser();
    const auth = await authorizeSonnet(user);
    expect(auth.reserved).toBe(18); // 3 + 15
    expect(auth.available).toBe(10_000 - 18);
    const settled = await settleChat(fx.deps, { holdId: auth.holdId, inputTokens: 1000, outputTokens: 200 });
    expect(settled).toMatchObject({ status: "settled", charged: 6, released: 12, balance: 9_994 });
    const again = await settleChat(fx.deps, { holdId: auth.holdId, inputTokens: 5000, outputTokens: 5000 });
    expect(again).toMatchObject({ status: "settled", charged: 6, balance: 9_994 });
    const audit = await auditAccount(fx.deps, user);
    expect(audit.problems).toEqual([]);
    const view = await getBalance(fx.deps, user);
    expect(view).toMatchObject({ balance: 9_994, available: 9_994, held: 0 });
  });

  it("release returns the hold, and settle after release returns the release", async () => {
    const user = uniqueUser();
    const auth = await authorizeSonnet(user);
    const released = await releaseHold(fx.deps, { holdId: auth.holdId });
    expect(released).toMatchObject({ status: "released", released: 18, charged: 0, balance: 10_000 });
    const settle = await settleChat(fx.deps, { holdId: auth.holdId, inputTokens: 1, outputTokens: 1 });
    expect(settle).toMatchObject({ status: "released", charged: 0 });
    expect((await getBalance(fx.deps, user)).available).toBe(10_000);
    expect((await auditAccount(fx.deps, user)).ok).toBe(true);
  });

  it("settles at the real state when other entries landed after authorize", async () => {
    const user = uniqueUser();
    const auth = await authorizeSonnet(user);
    await grantCredits(fx.deps, { userId: user, key: "pack#cs_1", amount: 50_000, bucket: "purchased", reason: "pack" });
    const settled = await settleChat(fx.deps, { holdId: auth.holdId, inputTokens: 1000, outputTokens: 1000 });
    expect(settled.balance).toBe(60_000 - 18);
    const audit = await auditAccount(fx.deps, user);
    expect(audit.problems).toEqual([]);
    const view = await getBalance(fx.deps, user);
    expect(view).toMatchObject({ allowance: 10_000 - 18, purchased: 50_000 });
  });
});
