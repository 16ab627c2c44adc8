import { UpdateItemCommand } from "@aws-sdk/client-dynamodb";
import { beforeAll, describe, expect, it } from "vitest";
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
import { ledgerFixture, uniqueUser } from "../helpers/ledger.js";

const SONNET = "anthropic/claude-sonnet-4.5";
let fx: Awaited<ReturnType<typeof ledgerFixture>>;
beforeAll(async () => {
  fx = await ledgerFixture();
});

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
    const late = await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1000, outputTokens: 1000 });
    expect(late).toMatchObject({ status: "settled", charged: 18, released: 0, balance: 10_000 - 18 });
    const again = await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1000, outputTokens: 1000 });
    expect(again.balance).toBe(10_000 - 18);
    expect(await releaseHold(fx.deps, { holdId: hold.holdId })).toMatchObject({ status: "settled", charged: 18 });
    expect((await auditAccount(fx.deps, user)).ok).toBe(true);
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
