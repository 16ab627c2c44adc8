import { describe, expect, it } from "vitest";
import { InsufficientCreditsError } from "../../lib/errors.js";
import {
  auditAccount,
  authorizeChat,
  ensureAccount,
  getBalance,
  grantCredits,
  listHistory,
  settleChat,
} from "../../lib/ledger/index.js";
import { useFaults } from "../helpers/faults.js";
import { SONNET, uniqueUser, useLedgerFixture } from "../helpers/ledger.js";

const fx = useLedgerFixture({ maxOpenHolds: 500 });
const faults = useFaults(fx);

describe("concurrency against real DynamoDB", () => {
  it("200 concurrent authorizes against a balance that affords exactly 50 admit exactly 50", async () => {
    const user = uniqueUser();
    await ensureAccount(fx.deps, user);
    // 10,000 signup credits; each call reserves 200 (1000 in, ~13,134 out tokens => 3 + 197).
    const attempts = Array.from({ length: 200 }, (_, i) =>
      authorizeChat(fx.deps, { userId: user, requestId: `r${i}`, model: SONNET, inputTokens: 1000, maxOutputTokens: 13_134 }),
    );
    const results = await Promise.allSettled(attempts);
    const admitted = results.filter((r) => r.status === "fulfilled");
    const refused = results.filter((r) => r.status === "rejected");
    expect(admitted).toHaveLength(50);
    expect(refused.every((r) => r.status === "rejected" && r.reason instanceof InsufficientCreditsError)).toBe(true);
    const view = await getBalance(fx.deps, user);
    expect(view).toMatchObject({ balance: 10_000, available: 0, held: 10_000 });
    expect((await auditAccount(fx.deps, user)).problems).toEqual([]);
  });

  it("50 concurrent deliveries of the same invoice grant once", async () => {
    const user = uniqueUser();
    await ensureAccount(fx.deps, user);
    const grant = () =>
      grantCredits(fx.deps, {
        userId: user,
        key: "invoice#in_123",
        amount: 100_000,
        bucket: "allowance",
        reason: "invoice",
        refs: { invoice: "in_123" },
      });
    const results = await Promise.all(Array.from({ length: 50 }, grant));
    expect(results.filter((r) => r.applied)).toHaveLength(1);
    expect(new Set(results.map((r) => r.entry.seq))).toEqual(new Set([2]));
    expect((await getBalance(fx.deps, user)).balance).toBe(110_000);
    const history = await listHistory(fx.deps, { userId: user });
    expect(history.entries.map((e) => e.key)).toEqual(["invoice#in_123", "signup"]);
    expect((await auditAccount(fx.deps, user)).ok).toBe(true);
  });

  it("50 concurrent deliveries of the same invoice to an account that does not exist yet grant once", async () => {
    const user = uniqueUser("unseen");
    const grant = () =>
      grantCredits(fx.deps, { userId: user, key: "invoice#in_new", amount: 100_000, bucket: "allowance", reason: "invoice" });
    // Every delivery races to create the account too, and some creations hit transient faults:
    // each must retry, never fail or double.
    faults.next("TransactWriteItemsCommand", "conflict", 3);
    faults.next("GetItemCommand", "throttle", 3);
    const results = await Promise.all(Array.from({ length: 50 }, grant));
    expect(faults.pending()).toBe(0);
    expect(results.filter((r) => r.applied)).toHaveLength(1);
    expect(new Set(results.map((r) => `${r.entry.key}@${r.entry.seq}:${r.balance}`))).toEqual(new Set(["invoice#in_new@2:110000"]));
    const history = await listHistory(fx.deps, { userId: user });
    expect(history.entries.map((e) => e.key)).toEqual(["invoice#in_new", "signup"]);
    expect((await getBalance(fx.deps, user)).balance).toBe(110_000);
    expect((await auditAccount(fx.deps, user)).problems).toEqual([]);
  });

  it("20 concurrent settles of one hold charge once and all return the first outcome", async () => {
    const user = uniqueUser();
    const hold = await authorizeChat(fx.deps, {
      userId: user,
      requestId: "chat-1",
      model: SONNET,
      inputTokens: 2000,
      maxOutputTokens: 2000,
    });
    const settles = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        // Different reported usage per call: only the first to land may count.
        settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 2000, outputTokens: 100 * (i + 1) }),
      ),
    );
    const charged = new Set(settles.map((s) => s.charged));
    expect(charged.size).toBe(1);
    const view = await getBalance(fx.deps, user);
    expect(view.balance).toBe(10_000 - (settles[0]?.charged ?? Number.NaN));
    expect(view.held).toBe(0);
    const history = await listHistory(fx.deps, { userId: user });
    expect(history.entries.filter((e) => e.reason === "settle")).toHaveLength(1);
    expect((await auditAccount(fx.deps, user)).ok).toBe(true);
  });

  it("concurrent chats of one user settle with exact balanceAfter for each", async () => {
    const user = uniqueUser();
    const holds = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        authorizeChat(fx.deps, { userId: user, requestId: `c${i}`, model: SONNET, inputTokens: 1000, maxOutputTokens: 1000 }),
      ),
    );
    await Promise.all(holds.map((h) => settleChat(fx.deps, { holdId: h.holdId, inputTokens: 1000, outputTokens: 500 })));
    const view = await getBalance(fx.deps, user);
    expect(view).toMatchObject({ balance: 10_000 - 12 * 11, held: 0, available: 10_000 - 12 * 11 });
    const audit = await auditAccount(fx.deps, user);
    expect(audit.problems).toEqual([]);
  });
});
