import { describe, expect, it } from "vitest";
import { type Catalog, catalog, validateCatalog } from "../../lib/catalog.js";
import {
  auditAccount,
  authorizeChat,
  changePlanSchedule,
  ensureAccount,
  getBalance,
  grantAllowanceIfDue,
  grantCredits,
  listHistory,
  settleChat,
} from "../../lib/ledger/index.js";
import { DAY_MS } from "../../lib/periods.js";
import { ledgerFixture, SONNET, START, uniqueUser, useLedgerFixture } from "../helpers/ledger.js";

const chat = (userId: string, requestId: string, maxOutputTokens = 1000) => ({
  userId,
  requestId,
  model: SONNET,
  inputTokens: 1000,
  maxOutputTokens,
});

describe("monthly free allowance (lazy at authorize)", () => {
  const fx = useLedgerFixture();

  it("day 0 gives only the signup bonus; day 29 nothing; day 30 one allowance", async () => {
    fx.clock.at(0);
    const user = uniqueUser();
    await authorizeChat(fx.deps, chat(user, "d0"));
    let keys = (await listHistory(fx.deps, { userId: user })).entries.map((e) => e.key);
    expect(keys).toEqual(["signup"]);

    fx.clock.at(29);
    await authorizeChat(fx.deps, chat(user, "d29"));
    keys = (await listHistory(fx.deps, { userId: user })).entries.map((e) => e.key);
    expect(keys).toEqual(["signup"]);

    fx.clock.at(30);
    await authorizeChat(fx.deps, chat(user, "d30"));
    await authorizeChat(fx.deps, chat(user, "d30b"));
    const entries = (await listHistory(fx.deps, { userId: user })).entries;
    expect(entries.map((e) => e.reason)).toEqual(["allowance", "signup"]);
    expect(entries[0]?.key).toBe(`allowance#${new Date(START + 30 * DAY_MS).toISOString()}`);
    expect((await getBalance(fx.deps, user)).balance).toBe(20_000);
    expect((await auditAccount(fx.deps, user)).ok).toBe(true);
  });

  it("six skipped periods then one authorize grant only the current period, once", async () => {
    fx.clock.at(0);
    const user = uniqueUser();
    await ensureAccount(fx.deps, user);
    fx.clock.at(7 * 30 + 3); // period 7
    await Promise.all([authorizeChat(fx.deps, chat(user, "a")), authorizeChat(fx.deps, chat(user, "b"))]);
    const entries = (await listHistory(fx.deps, { userId: user })).entries;
    expect(entries.filter((e) => e.reason === "allowance")).toHaveLength(1);
    expect(entries.find((e) => e.reason === "allowance")?.refs.period).toBe(7);
    const view = await getBalance(fx.deps, user);
    expect(view.balance).toBe(20_000);
    expect(view.nextGrantAt).toBe(new Date(START + 8 * 30 * DAY_MS).toISOString());
  });

  it("authorize, the sweep's grant and a second authorize racing grant the period once", async () => {
    for (let round = 0; round < 5; round++) {
      fx.clock.at(0);
      const user = uniqueUser("race");
      await ensureAccount(fx.deps, user);
      fx.clock.at(30 + round);
      const results = await Promise.allSettled([
        authorizeChat(fx.deps, chat(user, "one")),
        grantAllowanceIfDue(fx.deps, user),
        authorizeChat(fx.deps, chat(user, "two")),
        grantAllowanceIfDue(fx.deps, user),
      ]);
      expect(results.every((r) => r.status === "fulfilled")).toBe(true);
      const allowances = (await listHistory(fx.deps, { userId: user })).entries.filter((e) => e.reason === "allowance");
      expect(allowances).toHaveLength(1);
      expect((await getBalance(fx.deps, user)).balance).toBe(20_000);
      expect((await auditAccount(fx.deps, user)).ok).toBe(true);
    }
  });

  it("a negative balance is refused by the gate until a grant makes it positive", async () => {
    fx.clock.at(0);
    const user = uniqueUser();
    const hold = await authorizeChat(fx.deps, chat(user, "big", 600_000)); // reserves 9,003
    // The model used more than reserved: settle charges the truth and may go below zero.
    const settled = await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1000, outputTokens: 800_000 });
    expect(settled.balance).toBe(10_000 - 12_003);
    await expect(authorizeChat(fx.deps, chat(user, "next", 10))).rejects.toMatchObject({
      code: "INSUFFICIENT_CREDITS",
      details: { balance: -2_003, available: -2_003 },
    });
    await grantCredits(fx.deps, { userId: user, key: "pack#cs_x", amount: 50_000, bucket: "purchased", reason: "pack" });
    await expect(authorizeChat(fx.deps, chat(user, "next", 10))).resolves.toMatchObject({ balance: 47_997 });
    const view = await getBalance(fx.deps, user);
    // The debt was carried as negative allowance and the purchase stays whole until it is spent.
    expect(view).toMatchObject({ allowance: -2_003, purchased: 50_000 });
  });
});

describe("reset allowance policy", () => {
  const resetCatalog: Catalog = structuredClone(catalog);
  (resetCatalog.plans.free as { allowancePolicy: string }).allowancePolicy = "reset";
  const fx = useLedgerFixture({ catalog: resetCatalog });

  it("unused allowance lapses with an expire entry; purchased credits survive", async () => {
    fx.clock.at(0);
    const user = uniqueUser();
    await ensureAccount(fx.deps, user);
    await grantCredits(fx.deps, { userId: user, key: "pack#cs_1", amount: 50_000, bucket: "purchased", reason: "pack" });
    const hold = await authorizeChat(fx.deps, chat(user, "spend"));
    await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1000, outputTokens: 1000 }); // 18 from allowance
    fx.clock.at(30);
    const grant = await grantAllowanceIfDue(fx.deps, user);
    expect(grant.granted).toBe(true);
    const entries = (await listHistory(fx.deps, { userId: user })).entries;
    expect(entries.slice(0, 2).map((e) => [e.reason, e.amount])).toEqual([
      ["allowance", 10_000],
      ["expire", -(10_000 - 18)],
    ]);
    const view = await getBalance(fx.deps, user);
    expect(view).toMatchObject({ allowance: 10_000, purchased: 50_000, balance: 60_000 });
    expect((await auditAccount(fx.deps, user)).ok).toBe(true);
  });

  it("held credits do not lapse, so available never goes negative from expiry", async () => {
    fx.clock.at(0);
    const user = uniqueUser();
    const hold = await authorizeChat(fx.deps, chat(user, "open", 600_000)); // holds 9,003 of 10,000
    fx.clock.at(30);
    await grantAllowanceIfDue(fx.deps, user);
    const view = await getBalance(fx.deps, user);
    expect(view.available).toBe(10_000); // 997 lapsed, 10,000 granted, 9,003 still held
    expect(view.held).toBe(9_003);
    await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1000, outputTokens: 1000 });
    expect((await auditAccount(fx.deps, user)).ok).toBe(true);
  });

  it("held credits do not lapse when purchased credits are there too (holds draw on allowance first)", async () => {
    fx.clock.at(0);
    const user = uniqueUser();
    await ensureAccount(fx.deps, user);
    await grantCredits(fx.deps, { userId: user, key: "pack#cs_held", amount: 50_000, bucket: "purchased", reason: "pack" });
    const hold = await authorizeChat(fx.deps, chat(user, "open", 600_000)); // holds 9,003
    fx.clock.at(30);
    await grantAllowanceIfDue(fx.deps, user);
    const [, expire] = (await listHistory(fx.deps, { userId: user })).entries;
    expect(expire).toMatchObject({ reason: "expire", amount: -997 }); // only the allowance nobody holds
    await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1000, outputTokens: 1000 }); // costs 18
    expect(await getBalance(fx.deps, user)).toMatchObject({ balance: 60_000 - 997 + 10_000 - 18, purchased: 50_000, held: 0 });
    expect((await auditAccount(fx.deps, user)).problems).toEqual([]);
  });
});

describe("reset allowance policy: only for plans the schedule grants", () => {
  it("a catalog that resets a paid plan's allowance is refused (invoices can arrive late or be refunded after the lapse)", () => {
    const resetPro = structuredClone(catalog);
    (resetPro.plans.pro as { allowancePolicy: string }).allowancePolicy = "reset";
    expect(() => validateCatalog(resetPro)).toThrow(/plan pro is paid; only unpaid plans may reset/);
    const resetFree = structuredClone(catalog);
    (resetFree.plans.free as { allowancePolicy: string }).allowancePolicy = "reset";
    expect(validateCatalog(resetFree).plans.free?.allowancePolicy).toBe("reset");
  });

  it("invoice grants lapse nothing", async () => {
    const fx = await ledgerFixture();
    const user = uniqueUser("accumulate");
    await changePlanSchedule(fx.deps, { userId: user, plan: "pro", interval: "month" });
    await grantCredits(fx.deps, { userId: user, key: "invoice#in_acc", amount: 100_000, bucket: "allowance", reason: "invoice" });
    expect((await listHistory(fx.deps, { userId: user })).entries.map((e) => e.reason)).toEqual(["invoice", "signup"]);
    expect((await getBalance(fx.deps, user)).balance).toBe(110_000);
  });
});
