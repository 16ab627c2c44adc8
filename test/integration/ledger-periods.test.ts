import { beforeAll, describe, expect, it } from "vitest";
import { type Catalog, catalog } from "../../lib/catalog.js";
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
import { ledgerFixture, START, uniqueUser } from "../helpers/ledger.js";

const SONNET = "anthropic/claude-sonnet-4.5";
const chat = (userId: string, requestId: string, maxOutputTokens = 1000) => ({
  userId,
  requestId,
  model: SONNET,
  inputTokens: 1000,
  maxOutputTokens,
});

describe("monthly free allowance (lazy at authorize)", () => {
  let fx: Awaited<ReturnType<typeof ledgerFixture>>;
  beforeAll(async () => {
    fx = await ledgerFixture();
  });

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
  let fx: Awaited<ReturnType<typeof ledgerFixture>>;
  beforeAll(async () => {
    fx = await ledgerFixture({ catalog: resetCatalog });
  });

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
});

describe("reset allowance policy on a plan whose allowance comes from invoices", () => {
  const resetPro: Catalog = structuredClone(catalog);
  (resetPro.plans.pro as { allowancePolicy: string }).allowancePolicy = "reset";
  let fx: Awaited<ReturnType<typeof ledgerFixture>>;
  let accumulate: Awaited<ReturnType<typeof ledgerFixture>>;
  beforeAll(async () => {
    fx = await ledgerFixture({ catalog: resetPro });
    accumulate = await ledgerFixture();
  });
  const invoice = (userId: string, id: string) =>
    grantCredits(fx.deps, { userId, key: `invoice#${id}`, amount: 100_000, bucket: "allowance", reason: "invoice", refs: { invoice: id } });
  const amounts = async (userId: string) =>
    (await listHistory(fx.deps, { userId, limit: 100 })).entries.map((e) => [e.key, e.amount]).reverse();

  it("each paid invoice lapses the unused allowance once; purchased credits and other grants never lapse", async () => {
    const user = uniqueUser("reset-pro");
    await ensureAccount(fx.deps, user);
    await grantCredits(fx.deps, { userId: user, key: "pack#cs_keep", amount: 50_000, bucket: "purchased", reason: "pack" });
    await changePlanSchedule(fx.deps, { userId: user, plan: "pro", interval: "month" });
    await invoice(user, "in_1"); // the signup bonus, unused, lapses with the first period's grant
    const hold = await authorizeChat(fx.deps, chat(user, "spend"));
    await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1000, outputTokens: 1000 }); // 18 from allowance
    // An upgrade top-up is not a new period: nothing lapses with it.
    await grantCredits(fx.deps, { userId: user, key: "upgrade#sub_1#1", amount: 7, bucket: "allowance", reason: "upgrade" });
    const renewal = await invoice(user, "in_2");
    expect(renewal).toMatchObject({ applied: true, balance: 150_000 });
    const redelivered = await invoice(user, "in_2");
    expect(redelivered).toMatchObject({ applied: false, balance: 150_000 });
    expect(await amounts(user)).toEqual([
      ["signup", 10_000],
      ["pack#cs_keep", 50_000],
      ["expire#invoice#in_1", -10_000],
      ["invoice#in_1", 100_000],
      [expect.stringMatching(/^settle#spend#/), -18],
      ["upgrade#sub_1#1", 7],
      ["expire#invoice#in_2", -(100_000 - 18 + 7)],
      ["invoice#in_2", 100_000],
    ]);
    expect(await getBalance(fx.deps, user)).toMatchObject({ allowance: 100_000, purchased: 50_000, balance: 150_000 });
    expect((await auditAccount(fx.deps, user)).problems).toEqual([]);
  });

  it("credits held by an open chat do not lapse with an invoice", async () => {
    const user = uniqueUser("reset-held");
    await changePlanSchedule(fx.deps, { userId: user, plan: "pro", interval: "month" });
    const hold = await authorizeChat(fx.deps, chat(user, "open", 600_000)); // holds 9,003 of the 10,000
    await invoice(user, "in_held"); // only the 997 not held lapse
    expect(await getBalance(fx.deps, user)).toMatchObject({ available: 100_000, held: 9_003, balance: 109_003 });
    await settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 1000, outputTokens: 1000 });
    expect(await getBalance(fx.deps, user)).toMatchObject({ balance: 109_003 - 18, held: 0 });
    expect((await auditAccount(fx.deps, user)).problems).toEqual([]);
  });

  it("under the shipped catalog (accumulate) an invoice lapses nothing", async () => {
    const user = uniqueUser("accumulate");
    await changePlanSchedule(accumulate.deps, { userId: user, plan: "pro", interval: "month" });
    await grantCredits(accumulate.deps, { userId: user, key: "invoice#in_acc", amount: 100_000, bucket: "allowance", reason: "invoice" });
    expect((await listHistory(accumulate.deps, { userId: user })).entries.map((e) => e.reason)).toEqual(["invoice", "signup"]);
    expect((await getBalance(accumulate.deps, user)).balance).toBe(110_000);
  });
});
