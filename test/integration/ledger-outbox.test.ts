import { describe, expect, it } from "vitest";
import {
  auditAccount,
  authorizeChat,
  getBalance,
  grantCredits,
  listHistory,
  type LedgerDeps,
  settleChat,
} from "../../lib/ledger/index.js";
import { createDynamoScheduleStore } from "../../lib/sweep/dynamo-schedule-store.js";
import { runSweep } from "../../lib/sweep/run-sweep.js";
import { uniqueUser, useLedgerFixture } from "../helpers/ledger.js";

const GPT = "openai/gpt-5.2";
const fx = useLedgerFixture({ maxOpenHolds: 500 });

/** Deps whose store dies right after the outbox write, as a Lambda killed between two steps would. */
function crashingAfterOutbox(deps: LedgerDeps): LedgerDeps {
  return {
    ...deps,
    store: {
      ...deps.store,
      materialize: async () => {
        throw new Error("Lambda timed out");
      },
    },
  };
}

describe("hot account: concurrent settles of one account", () => {
  it("64 concurrent chats on one account all settle, with an exact, gap-free ledger", async () => {
    const user = uniqueUser("hot");
    await grantCredits(fx.deps, { userId: user, key: "admin#fund", amount: 1_000_000, bucket: "purchased", reason: "admin" });
    const results = await Promise.all(
      Array.from({ length: 64 }, async (_, i) => {
        const hold = await authorizeChat(fx.deps, { userId: user, requestId: `r${i}`, model: GPT, inputTokens: 1000, maxOutputTokens: 1000 });
        return settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1000, outputTokens: 100 * (i % 7) });
      }),
    );
    const charged = results.reduce((sum, outcome) => sum + outcome.charged, 0);
    expect(results.every((outcome) => outcome.status === "settled")).toBe(true);
    const view = await getBalance(fx.deps, user);
    expect(view).toMatchObject({ balance: 1_010_000 - charged, held: 0, available: 1_010_000 - charged });
    const audit = await auditAccount(fx.deps, user);
    expect(audit.problems).toEqual([]); // seq 1..66 without gaps, every balanceAfter exact
    expect(audit.entries).toBe(66);
    expect((await fx.deps.store.getAccount(user))?.outbox).toEqual({});
  });
});

describe("a crash between the outbox write and the entry", () => {
  it("keeps the ledger whole; the next settle call returns the first outcome and writes the entry out", async () => {
    const user = uniqueUser("crash");
    const first = await authorizeChat(fx.deps, { userId: user, requestId: "a", model: GPT, inputTokens: 1000, maxOutputTokens: 1000 });
    const second = await authorizeChat(fx.deps, { userId: user, requestId: "b", model: GPT, inputTokens: 1000, maxOutputTokens: 1000 });
    await settleChat(fx.deps, { holdId: first.holdId, inputTokens: 1000, outputTokens: 1000 }); // moves seq on
    // `second` now takes the outbox path, and the process dies before writing the entry out.
    await expect(settleChat(crashingAfterOutbox(fx.deps), { holdId: second.holdId, inputTokens: 1000, outputTokens: 500 })).rejects.toThrow(
      /timed out/,
    );
    const account = await fx.deps.store.getAccount(user);
    expect(Object.keys(account?.outbox ?? {})).toHaveLength(1);
    // The charge is applied and counted: audit reads the outbox as part of the ledger.
    expect(await auditAccount(fx.deps, user)).toMatchObject({ ok: true, balance: 10_000 - 18 - 11 });
    // The chat backend retries the settle (with other numbers, even): the first outcome stands.
    const retried = await settleChat(fx.deps, { holdId: second.holdId, inputTokens: 9_000, outputTokens: 9_000 });
    expect(retried).toMatchObject({ status: "settled", charged: 11, balance: 10_000 - 29 });
    expect((await fx.deps.store.getAccount(user))?.outbox).toEqual({});
    const keys = (await listHistory(fx.deps, { userId: user })).entries.map((e) => e.reason);
    expect(keys).toEqual(["settle", "settle", "signup"]);
    expect((await auditAccount(fx.deps, user)).problems).toEqual([]);
  });

  it("if nobody retries, the sweep writes the entry out", async () => {
    const user = uniqueUser("orphan");
    const first = await authorizeChat(fx.deps, { userId: user, requestId: "a", model: GPT, inputTokens: 1000, maxOutputTokens: 1000 });
    const second = await authorizeChat(fx.deps, { userId: user, requestId: "b", model: GPT, inputTokens: 1000, maxOutputTokens: 1000 });
    await settleChat(fx.deps, { holdId: first.holdId, inputTokens: 1000, outputTokens: 1000 });
    await settleChat(crashingAfterOutbox(fx.deps), { holdId: second.holdId, inputTokens: 1000, outputTokens: 500 }).catch(() => undefined);
    expect(Object.keys((await fx.deps.store.getAccount(user))?.outbox ?? {})).toHaveLength(1);
    const schedule = createDynamoScheduleStore(fx.client, fx.tableName);
    // The account is due for the sweep at its earliest hold expiry: not before.
    await runSweep(fx.deps, schedule, { remainingMs: () => 600_000 });
    expect(Object.keys((await fx.deps.store.getAccount(user))?.outbox ?? {})).toHaveLength(1);
    fx.clock.value += fx.deps.holdTtlMs + 1;
    await runSweep(fx.deps, schedule, { remainingMs: () => 600_000 });
    expect((await fx.deps.store.getAccount(user))?.outbox).toEqual({});
    expect((await listHistory(fx.deps, { userId: user })).entries.filter((e) => e.reason === "settle")).toHaveLength(2);
    expect((await auditAccount(fx.deps, user)).problems).toEqual([]);
  });
});
