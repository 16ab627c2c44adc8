import { UpdateItemCommand } from "@aws-sdk/client-dynamodb";
import { describe, expect, it } from "vitest";
import { InsufficientCreditsError } from "../../lib/errors.js";
import {
  auditAccount,
  authorizeChat,
  ensureAccount,
  getBalance,
  grantCredits,
  listHistory,
  releaseExpiredHolds,
  releaseHold,
  settleChat,
} from "../../lib/ledger/index.js";
import { OPUS, onPaidPlan, SONNET, uniqueUser, useLedgerFixture } from "../helpers/ledger.js";

const fx = useLedgerFixture();

describe("history", () => {
  it("pages newest first with opaque cursors, without gaps or repeats", async () => {
    const user = uniqueUser();
    await ensureAccount(fx.deps, user);
    for (let i = 1; i <= 24; i++) {
      await grantCredits(fx.deps, { userId: user, key: `admin#g${i}`, amount: i, bucket: "allowance", reason: "admin" });
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await listHistory(fx.deps, { userId: user, limit: 10, ...(cursor ? { cursor } : {}) });
      seen.push(...page.entries.map((e) => e.key));
      cursor = page.nextCursor ?? undefined;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual([...Array.from({ length: 24 }, (_, i) => `admin#g${24 - i}`), "signup"]);
    const first = await listHistory(fx.deps, { userId: user, limit: 2 });
    expect(first.entries.map((e) => e.balanceAfter)).toEqual([10_000 + 300, 10_000 + 300 - 24]);
    await expect(listHistory(fx.deps, { userId: user, cursor: "not-a-cursor" })).rejects.toMatchObject({
      code: "VALIDATION_FAILED",
      details: { field: "cursor" },
    });
    await expect(listHistory(fx.deps, { userId: user, limit: 101 })).rejects.toMatchObject({ details: { field: "limit" } });
  });
});

describe("hold expiry and requestId reuse", () => {
  it("expired holds are released once; a late settle still records the true usage", async () => {
    const user = uniqueUser();
    const hold = await authorizeChat(fx.deps, { userId: user, requestId: "slow", model: SONNET, inputTokens: 1000, maxOutputTokens: 1000 });
    expect(await releaseExpiredHolds(fx.deps, user)).toEqual([]); // not expired yet
    fx.clock.value += fx.deps.holdTtlMs + 1;
    const sweeps = await Promise.all([releaseExpiredHolds(fx.deps, user), releaseExpiredHolds(fx.deps, user)]);
    expect(sweeps.flat()).toHaveLength(1); // released exactly once, by one of the two
    expect(sweeps.flat()[0]).toMatchObject({ status: "expired", released: 18 });
    expect((await getBalance(fx.deps, user)).held).toBe(0);
    // True usage 48 (1000 in, 3000 out) is above the 18 reserved: exactly 48 is charged.
    const late = await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1000, outputTokens: 3000 });
    expect(late).toEqual({ holdId: hold.holdId, status: "settled", charged: 48, released: 0, balance: 10_000 - 48 });
    const again = await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1000, outputTokens: 1000 });
    expect(again).toEqual(late);
    expect(await releaseHold(fx.deps, { holdId: hold.holdId })).toMatchObject({ status: "settled", charged: 48 });
    expect(await getBalance(fx.deps, user)).toMatchObject({ balance: 10_000 - 48, held: 0 });
    const settles = (await listHistory(fx.deps, { userId: user })).entries.filter((e) => e.reason === "settle");
    expect(settles.map((e) => e.amount)).toEqual([-48]);
    expect((await auditAccount(fx.deps, user)).ok).toBe(true);
  });

  it("a late settle may take the balance negative; the gate then refuses until it is repaid", async () => {
    const user = uniqueUser();
    await onPaidPlan(fx.deps, user);
    const hold = await authorizeChat(fx.deps, { userId: user, requestId: "runaway", model: OPUS, inputTokens: 0, maxOutputTokens: 100 });
    expect(hold.reserved).toBe(8);
    fx.clock.value += fx.deps.holdTtlMs + 1;
    expect(await releaseExpiredHolds(fx.deps, user)).toHaveLength(1);
    // 200,000 output tokens of opus cost 15,000: more than the whole balance.
    const late = await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 0, outputTokens: 200_000 });
    expect(late).toMatchObject({ status: "settled", charged: 15_000, balance: -5_000 });
    expect(await getBalance(fx.deps, user)).toMatchObject({ balance: -5_000, available: -5_000, held: 0, allowance: -5_000 });
    const cheapest = { userId: user, requestId: "next", model: SONNET, inputTokens: 0, maxOutputTokens: 0 };
    await expect(authorizeChat(fx.deps, cheapest)).rejects.toBeInstanceOf(InsufficientCreditsError);
    await expect(authorizeChat(fx.deps, cheapest)).rejects.toMatchObject({ details: { required: 1, balance: -5_000, available: -5_000 } });
    // Repaying the debt (a pack) opens the gate again.
    await grantCredits(fx.deps, { userId: user, key: "pack#cs_repay", amount: 5_001, bucket: "purchased", reason: "pack" });
    await expect(authorizeChat(fx.deps, cheapest)).resolves.toMatchObject({ reserved: 1, balance: 1 });
    expect((await auditAccount(fx.deps, user)).problems).toEqual([]);
  });

  it("the same requestId while open returns the same hold; after it closed it opens a new one", async () => {
    const user = uniqueUser();
    const request = { userId: user, requestId: "same", model: SONNET, inputTokens: 1000, maxOutputTokens: 1000 };
    const first = await authorizeChat(fx.deps, request);
    const retried = await authorizeChat(fx.deps, request);
    expect(retried.holdId).toBe(first.holdId);
    expect((await getBalance(fx.deps, user)).held).toBe(18);
    await expect(authorizeChat(fx.deps, { ...request, maxOutputTokens: 5 })).rejects.toMatchObject({ code: "CONFLICT" });
    await settleChat(fx.deps, { holdId: first.holdId, inputTokens: 1000, outputTokens: 1000 });
    const reopened = await authorizeChat(fx.deps, request);
    expect(reopened.holdId).not.toBe(first.holdId);
    // The old id still answers with its own outcome and leaves the new hold alone.
    expect(await releaseHold(fx.deps, { holdId: first.holdId })).toMatchObject({ status: "settled" });
    expect((await getBalance(fx.deps, user)).held).toBe(18);
    await settleChat(fx.deps, { holdId: reopened.holdId, inputTokens: 1000, outputTokens: 1000 });
    expect(await getBalance(fx.deps, user)).toMatchObject({ balance: 10_000 - 36, held: 0 });
  });
});

describe("a requestId re-used after its hold closed (docs/invariants.md, invariant 5: it is a new hold)", () => {
  it("opens a new hold; the first hold id keeps its first outcome and is never charged twice", async () => {
    const user = uniqueUser();
    const request = { userId: user, requestId: "again", model: SONNET, inputTokens: 1000, maxOutputTokens: 1000 };
    const first = await authorizeChat(fx.deps, request);
    const firstOutcome = await settleChat(fx.deps, { holdId: first.holdId, inputTokens: 1000, outputTokens: 200 });
    expect(firstOutcome).toMatchObject({ status: "settled", charged: 6, balance: 10_000 - 6 });

    // A new hold, so different parameters are not a CONFLICT once the first one closed.
    const second = await authorizeChat(fx.deps, { ...request, maxOutputTokens: 2000 });
    expect(second.holdId).not.toBe(first.holdId);
    expect(second.reserved).toBe(33);
    expect(await authorizeChat(fx.deps, { ...request, maxOutputTokens: 2000 })).toEqual(second); // open: same hold

    // Settling the first id again (other usage, while the new hold is open) answers the first outcome.
    const replay = await settleChat(fx.deps, { holdId: first.holdId, inputTokens: 1000, outputTokens: 1000 });
    expect(replay).toEqual(firstOutcome);
    expect(await getBalance(fx.deps, user)).toMatchObject({ balance: 10_000 - 6, held: 33 });

    const secondOutcome = await settleChat(fx.deps, { holdId: second.holdId, inputTokens: 1000, outputTokens: 1000 });
    expect(secondOutcome).toMatchObject({ status: "settled", charged: 18, released: 15, balance: 10_000 - 24 });
    expect(await settleChat(fx.deps, { holdId: first.holdId, inputTokens: 1, outputTokens: 1 })).toEqual(firstOutcome);
    expect(await settleChat(fx.deps, { holdId: second.holdId, inputTokens: 1, outputTokens: 1 })).toEqual(secondOutcome);

    const settles = (await listHistory(fx.deps, { userId: user })).entries.filter((e) => e.reason === "settle");
    expect(settles.map((e) => e.amount)).toEqual([-18, -6]);
    expect(new Set(settles.map((e) => e.key)).size).toBe(2); // one entry per hold, keyed by its tag
    expect(await getBalance(fx.deps, user)).toMatchObject({ balance: 10_000 - 24, held: 0 });
    expect((await auditAccount(fx.deps, user)).problems).toEqual([]);
  });

  it("after a release, the same requestId opens a new hold and the released id stays released", async () => {
    const user = uniqueUser();
    const request = { userId: user, requestId: "retry", model: SONNET, inputTokens: 1000, maxOutputTokens: 1000 };
    const first = await authorizeChat(fx.deps, request);
    const released = await releaseHold(fx.deps, { holdId: first.holdId });
    const second = await authorizeChat(fx.deps, request);
    expect(second.holdId).not.toBe(first.holdId);
    expect(await settleChat(fx.deps, { holdId: first.holdId, inputTokens: 1000, outputTokens: 1000 })).toEqual(released);
    expect(await getBalance(fx.deps, user)).toMatchObject({ balance: 10_000, held: 18 }); // new hold untouched
    await settleChat(fx.deps, { holdId: second.holdId, inputTokens: 1000, outputTokens: 1000 });
    expect(await getBalance(fx.deps, user)).toMatchObject({ balance: 10_000 - 18, held: 0 });
    expect((await auditAccount(fx.deps, user)).problems).toEqual([]);
  });
});

describe("auditAccount", () => {
  it("reports zero drift for a healthy account and finds drift written behind the ledger's back", async () => {
    const user = uniqueUser();
    await grantCredits(fx.deps, { userId: user, key: "pack#cs_a", amount: 500, bucket: "purchased", reason: "pack" });
    expect(await auditAccount(fx.deps, user)).toMatchObject({ ok: true, drift: 0, balance: 10_500, entries: 2 });
    await fx.client.send(
      new UpdateItemCommand({
        TableName: fx.tableName,
        Key: { pk: { S: `U#${user}` }, sk: { S: "ACCOUNT" } },
        UpdateExpression: "SET #b = #b + :x",
        ExpressionAttributeNames: { "#b": "balance" },
        ExpressionAttributeValues: { ":x": { N: "7" } },
      }),
    );
    const audit = await auditAccount(fx.deps, user);
    expect(audit).toMatchObject({ ok: false, drift: 7 });
    expect(audit.problems.join("\n")).toMatch(/balance 10507 != ledger sum 10500/);
  });
});
