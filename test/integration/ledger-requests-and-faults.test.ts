import { describe, expect, it } from "vitest";
import { ValidationError } from "../../lib/errors.js";
import {
  auditAccount,
  authorizeChat,
  changePlanSchedule,
  clawBack,
  ensureAccount,
  getBalance,
  grantCredits,
  listHistory,
  releaseHold,
  settleChat,
} from "../../lib/ledger/index.js";
import { useFaults } from "../helpers/faults.js";
import { onPaidPlan, SONNET, uniqueUser, useLedgerFixture } from "../helpers/ledger.js";
import { tableDigest } from "../reliability/harness.js";

const fx = useLedgerFixture({ authorizeRateLimitPerMinute: 600 });
const faults = useFaults(fx);

const chat = (userId: string, requestId: string) => ({
  userId,
  requestId,
  model: SONNET,
  inputTokens: 1200,
  maxOutputTokens: 800,
});

describe("DynamoDB requests per operation", () => {
  it("steady state: authorize is 1 request and settle is 1 request", async () => {
    const user = uniqueUser();
    await authorizeChat(fx.deps, chat(user, "warm"));
    for (let i = 0; i < 3; i++) {
      fx.requests.reset();
      const hold = await authorizeChat(fx.deps, chat(user, `r${i}`));
      expect(Object.fromEntries(fx.requests.counts)).toEqual({ UpdateItemCommand: 1 });
      fx.requests.reset();
      await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1200, outputTokens: 300 });
      expect(Object.fromEntries(fx.requests.counts)).toEqual({ TransactWriteItemsCommand: 1 });
    }
  });

  it("a settle whose expected state is stale goes through the outbox: no read, no retry loop", async () => {
    const user = uniqueUser();
    const first = await authorizeChat(fx.deps, chat(user, "a"));
    const second = await authorizeChat(fx.deps, chat(user, "b"));
    await settleChat(fx.deps, { holdId: first.holdId, inputTokens: 1, outputTokens: 1 });
    fx.requests.reset();
    await settleChat(fx.deps, { holdId: second.holdId, inputTokens: 1, outputTokens: 1 });
    // The refused fast path, the commutative outbox write, and the entry written out.
    expect(Object.fromEntries(fx.requests.counts)).toEqual({ TransactWriteItemsCommand: 2, UpdateItemCommand: 1 });
    expect((await auditAccount(fx.deps, user)).ok).toBe(true);
    expect((await fx.deps.store.getAccount(user))?.outbox).toEqual({});
  });
});

describe("transient failures are retried and never double anything", () => {
  it("throttled and conflicted writes are retried until they land", async () => {
    const user = uniqueUser();
    await ensureAccount(fx.deps, user);
    faults.next("UpdateItemCommand", "throttle", 2);
    const hold = await authorizeChat(fx.deps, chat(user, "t1"));
    faults.next("TransactWriteItemsCommand", "conflict", 2);
    await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1200, outputTokens: 800 });
    faults.next("TransactWriteItemsCommand", "throttle");
    await grantCredits(fx.deps, { userId: user, key: "admin#t1", amount: 5, bucket: "allowance", reason: "admin" });
    expect(faults.pending()).toBe(0);
    expect((await getBalance(fx.deps, user)).balance).toBe(10_000 - 16 + 5);
    expect((await auditAccount(fx.deps, user)).ok).toBe(true);
  });

  it("a brand-new user's first grant survives a conflict or throttle on account creation", async () => {
    const grant = (userId: string) =>
      grantCredits(fx.deps, { userId, key: "invoice#in_first", amount: 100_000, bucket: "allowance", reason: "invoice" });
    // The first TransactWriteItems of a first-sight grant is the account's creation.
    const cases: [string, "conflict" | "throttle"][] = [
      ["TransactWriteItemsCommand", "conflict"],
      ["TransactWriteItemsCommand", "throttle"],
      ["GetItemCommand", "throttle"],
    ];
    for (const [command, fault] of cases) {
      const user = uniqueUser("first-sight");
      faults.next(command, fault);
      const result = await grant(user);
      expect(faults.pending(), `${command} ${fault}`).toBe(0);
      expect(result).toMatchObject({ applied: true, balance: 110_000 });
      const keys = (await listHistory(fx.deps, { userId: user })).entries.map((e) => e.key);
      expect(keys).toEqual(["invoice#in_first", "signup"]);
      expect((await auditAccount(fx.deps, user)).problems).toEqual([]);
    }
  });

  it("first-sight clawBack, plan change and balance read also retry account creation", async () => {
    const claw = uniqueUser("first-claw");
    faults.next("TransactWriteItemsCommand", "conflict");
    await clawBack(fx.deps, { userId: claw, key: "refund#re_first", amount: 40, bucket: "purchased", reason: "refund" });
    expect((await listHistory(fx.deps, { userId: claw })).entries.map((e) => [e.key, e.amount])).toEqual([
      ["refund#re_first", -40],
      ["signup", 10_000],
    ]);
    const planned = uniqueUser("first-plan");
    faults.next("TransactWriteItemsCommand", "throttle");
    await expect(changePlanSchedule(fx.deps, { userId: planned, plan: "pro", interval: "month" })).resolves.toMatchObject({ plan: "pro" });
    const viewed = uniqueUser("first-view");
    faults.next("TransactWriteItemsCommand", "conflict");
    await expect(getBalance(fx.deps, viewed)).resolves.toMatchObject({ balance: 10_000 });
    expect(faults.pending()).toBe(0);
    for (const user of [claw, planned, viewed]) expect((await auditAccount(fx.deps, user)).problems).toEqual([]);
  });

  it("a lost answer to an applied write, retried by the caller, changes nothing twice", async () => {
    const user = uniqueUser();
    await ensureAccount(fx.deps, user);
    faults.next("TransactWriteItemsCommand", "lostResponse");
    await expect(
      grantCredits(fx.deps, { userId: user, key: "pack#cs_lost", amount: 50_000, bucket: "purchased", reason: "pack" }),
    ).rejects.toThrow(/hang up/);
    const retried = await grantCredits(fx.deps, {
      userId: user,
      key: "pack#cs_lost",
      amount: 50_000,
      bucket: "purchased",
      reason: "pack",
    });
    expect(retried).toMatchObject({ applied: false, balance: 60_000 });

    faults.next("UpdateItemCommand", "lostResponse");
    await expect(authorizeChat(fx.deps, chat(user, "lost"))).rejects.toThrow(/hang up/);
    const hold = await authorizeChat(fx.deps, chat(user, "lost"));
    expect((await getBalance(fx.deps, user)).held).toBe(hold.reserved);

    faults.next("TransactWriteItemsCommand", "lostResponse");
    await expect(settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1200, outputTokens: 800 })).rejects.toThrow();
    const settled = await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1200, outputTokens: 800 });
    expect(settled).toMatchObject({ status: "settled", charged: 16, balance: 60_000 - 16 });
    const settles = (await listHistory(fx.deps, { userId: user })).entries.filter((e) => e.reason === "settle");
    expect(settles).toHaveLength(1);
    expect((await auditAccount(fx.deps, user)).ok).toBe(true);
  });
});

describe("bad input fails with a named error and writes nothing", () => {
  async function expectNothingWritten(user: string, action: () => Promise<unknown>, field: string | RegExp) {
    const before = await tableDigest(fx.client, fx.tableName); // every item, not just the account
    const error = await action().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as { code?: string }).code).toMatch(/VALIDATION_FAILED|UNKNOWN_MODEL/);
    expect(JSON.stringify((error as ValidationError).details) + (error as Error).message).toMatch(field);
    expect(await tableDigest(fx.client, fx.tableName), `${user} ${String(field)}`).toEqual(before);
  }

  it("rejects bad amounts, keys, ids, models and token counts", async () => {
    const user = uniqueUser();
    await ensureAccount(fx.deps, user);
    const grant = (over: Record<string, unknown>) => () =>
      grantCredits(fx.deps, {
        userId: user,
        key: "admin#x",
        amount: 5,
        bucket: "allowance",
        reason: "admin",
        ...over,
      } as never);
    await expectNothingWritten(user, grant({ amount: -5, reason: "pack" }), "amount");
    await expectNothingWritten(user, grant({ amount: 1.5 }), "amount");
    await expectNothingWritten(user, grant({ amount: 0 }), "amount");
    await expectNothingWritten(user, grant({ key: "" }), "key");
    await expectNothingWritten(user, grant({ key: "x".repeat(201) }), "key");
    await expectNothingWritten(user, grant({ key: "has space" }), "key");
    await expectNothingWritten(user, grant({ bucket: "gold" }), "bucket");
    const claw = (over: Record<string, unknown>) => () =>
      clawBack(fx.deps, { userId: user, key: "refund#re_1", amount: 3, bucket: "purchased", reason: "refund", ...over } as never);
    await expectNothingWritten(user, claw({ amount: -3 }), "amount");
    await expectNothingWritten(user, claw({ amount: 2.5 }), "amount");
    await expectNothingWritten(user, claw({ amount: Number.NaN }), "amount");
    await expectNothingWritten(user, claw({ key: "" }), "key");
    await expectNothingWritten(user, claw({ reason: "goodwill" }), "reason");
    await expectNothingWritten(user, claw({ bucket: "gold" }), "bucket");
    await expectNothingWritten(user, claw({ userId: "has space" }), "userId");
    await expectNothingWritten(user, () => authorizeChat(fx.deps, { ...chat(user, "m"), model: "acme/unknown" }), "model");
    await expectNothingWritten(user, () => authorizeChat(fx.deps, { ...chat(user, "m"), inputTokens: -1 }), "inputTokens");
    await expectNothingWritten(user, () => authorizeChat(fx.deps, { ...chat(user, "m"), maxOutputTokens: 2.5 }), "maxOutputTokens");
    await expectNothingWritten(user, () => authorizeChat(fx.deps, { ...chat(user, "") }), "requestId");
    await expectNothingWritten(user, () => authorizeChat(fx.deps, { ...chat(user, "r".repeat(129)) }), "requestId");
    await expectNothingWritten(user, () => settleChat(fx.deps, { holdId: "", inputTokens: 1, outputTokens: 1 }), "holdId");
    // A real open hold: bad usage is refused before any I/O and the hold stays open.
    const { holdId } = await authorizeChat(fx.deps, chat(user, "open"));
    const settle = (over: Record<string, unknown>) => () => settleChat(fx.deps, { holdId, inputTokens: 1, outputTokens: 1, ...over } as never);
    await expectNothingWritten(user, settle({ inputTokens: -1 }), "inputTokens");
    await expectNothingWritten(user, settle({ outputTokens: -5 }), "outputTokens");
    await expectNothingWritten(user, settle({ inputTokens: 1.5 }), "inputTokens");
    await expectNothingWritten(user, settle({ outputTokens: 0.1 }), "outputTokens");
    await expectNothingWritten(user, settle({ inputTokens: 2_000_001 }), "inputTokens");
    await expectNothingWritten(user, settle({ outputTokens: 1e9 }), "outputTokens");
    await expectNothingWritten(user, settle({ outputTokens: Number.POSITIVE_INFINITY }), "outputTokens");
    expect((await getBalance(fx.deps, user)).held).toBe(16);
    await expectNothingWritten(user, () => auditAccount(fx.deps, "has space"), "userId");
    await expectNothingWritten(user, () => auditAccount(fx.deps, ""), "userId");
    await expectNothingWritten(user, () => releaseHold(fx.deps, { holdId: "" }), "holdId");
    await expectNothingWritten(user, () => releaseHold(fx.deps, { holdId: "h".repeat(1025) }), "holdId");
    await expectNothingWritten(user, () => listHistory(fx.deps, { userId: user, limit: 0 }), "limit");
    await expectNothingWritten(user, () => listHistory(fx.deps, { userId: user, cursor: "not-ours" }), "cursor");
    const plan = (over: Record<string, unknown>) => () => changePlanSchedule(fx.deps, { userId: user, plan: "pro", interval: "month", ...over } as never);
    await expectNothingWritten(user, plan({ plan: "platinum" }), "plan");
    await expectNothingWritten(user, plan({ interval: "week" }), "interval");
    await expectNothingWritten(user, plan({ interval: "year" }), "periodStart");
  });

  it("rejects empty and oversize user ids before touching the table", async () => {
    fx.requests.reset();
    await expect(ensureAccount(fx.deps, "")).rejects.toBeInstanceOf(ValidationError);
    await expect(getBalance(fx.deps, "u".repeat(129))).rejects.toBeInstanceOf(ValidationError);
    await expect(authorizeChat(fx.deps, chat("", "r"))).rejects.toMatchObject({ details: { field: "userId" } });
    expect(fx.requests.total()).toBe(0);
  });

  it("unknown holds are NOT_FOUND, and a forged hold id cannot touch another hold", async () => {
    const user = uniqueUser();
    await onPaidPlan(fx.deps, user);
    const hold = await authorizeChat(fx.deps, { ...chat(user, "real"), model: "anthropic/claude-opus-4.5" });
    await expect(settleChat(fx.deps, { holdId: "hold_bogus", inputTokens: 1, outputTokens: 1 })).rejects.toMatchObject({
      code: "NOT_FOUND",
    });
    // A forged id naming the right hold but a cheaper model and a stale seq: conditions catch it,
    // and the settle is priced from the stored hold, not from the id.
    const { decodeHoldId, encodeHoldId } = await import("../../lib/ledger/hold-id.js");
    const ref = decodeHoldId(hold.holdId);
    if (!ref) throw new Error("authorize returned an undecodable hold id");
    const forged = encodeHoldId({ ...ref, model: SONNET, reserved: 1, seq: 99, balance: 1e9 });
    const settled = await settleChat(fx.deps, { holdId: forged, inputTokens: 1200, outputTokens: 800 });
    expect(settled).toMatchObject({ charged: 18 + 60, balance: 10_000 - 78 }); // opus rates, not sonnet's 16
    await expect(releaseHold(fx.deps, { holdId: hold.holdId })).resolves.toMatchObject({ status: "settled" });
    expect((await auditAccount(fx.deps, user)).ok).toBe(true);
  });
});
