import { beforeAll, describe, expect, it } from "vitest";
import { adjustForCharge } from "../../lib/ledger/charge-adjust.js";
import { auditAccount, changePlanSchedule, getBalance, grantAllowanceIfDue } from "../../lib/ledger/index.js";
import { type BudgetedAccount, scheduleBudgetOf } from "../../lib/ledger/schedule-budget.js";
import { ledgerFixture, START, uniqueUser } from "../helpers/ledger.js";

/**
 * The ledger side of a refunded annual year: the schedule budget (what the year's remaining
 * months may still grant) is spent by grantAllowanceIfDue in the same commit as the month it
 * grants, and written with a clawback's credits by adjustForCharge. A pro year: 100,000 a month.
 */
let fx: Awaited<ReturnType<typeof ledgerFixture>>;
beforeAll(async () => {
  fx = await ledgerFixture();
});

const MONTH = 100_000;
const SIGNUP = 10_000;
const account = async (userId: string) => (await fx.deps.store.getAccount(userId)) as BudgetedAccount;
let serial = 0;
/** A budget as billing writes it when no credits move: with an entry of 0 credits. */
const budgetOnly = (credits: number | null, anchor = START) => ({
  entry: { key: `budget#ch_test#${++serial}`, amount: 0, bucket: "allowance" as const, reason: "refund" as const },
  scheduleBudget: credits === null ? null : { anchor, credits },
});

/** A user on pro annual anchored at START, month 0 granted by its invoice (not modelled here). */
async function annual() {
  const userId = uniqueUser("budget");
  fx.clock.value = START;
  await changePlanSchedule(fx.deps, { userId, plan: "pro", interval: "year", periodStart: START });
  return userId;
}

async function months(userId: string, from: number, to: number): Promise<{ amount: number; withheld: unknown }[]> {
  const granted = [];
  for (let month = from; month <= to; month++) {
    fx.clock.value = Date.UTC(2026, month, 1, 13);
    const result = await grantAllowanceIfDue(fx.deps, userId);
    if (!result.granted) throw new Error(`month ${month} was not due`);
    granted.push({ amount: result.entry.amount, withheld: result.entry.refs.withheld });
  }
  return granted;
}

describe("schedule budget", () => {
  it("months grant at most the budget and spend it; what a month holds back is named on its entry", async () => {
    const userId = await annual();
    await adjustForCharge(fx.deps, userId, async () => budgetOnly(150_000));
    expect(await months(userId, 1, 3)).toEqual([
      { amount: MONTH, withheld: undefined },
      { amount: 50_000, withheld: 50_000 },
      { amount: 0, withheld: MONTH },
    ]);
    expect((await account(userId)).scheduleBudget).toEqual({ anchor: START, credits: 0 });
    expect((await getBalance(fx.deps, userId)).balance).toBe(SIGNUP + 150_000);
    expect((await auditAccount(fx.deps, userId)).problems).toEqual([]);
  });

  it("a budget no longer needed is removed, with its entry; the months then grant in full", async () => {
    const userId = await annual();
    await adjustForCharge(fx.deps, userId, async () => budgetOnly(0));
    expect(await months(userId, 1, 1)).toEqual([{ amount: 0, withheld: MONTH }]);
    const removed = await adjustForCharge(fx.deps, userId, async () => budgetOnly(null));
    expect(removed.entry).toMatchObject({ amount: 0, reason: "refund" });
    expect((await account(userId)).scheduleBudget).toBeUndefined();
    expect(await months(userId, 2, 2)).toEqual([{ amount: MONTH, withheld: undefined }]);
  });

  it("no budget, or a budget of another year's anchor, grants in full", async () => {
    const userId = await annual();
    expect(await months(userId, 1, 1)).toEqual([{ amount: MONTH, withheld: undefined }]);
    await adjustForCharge(fx.deps, userId, async () => budgetOnly(0, START - 1));
    expect(scheduleBudgetOf(await account(userId))).toBeUndefined();
    expect(await months(userId, 2, 2)).toEqual([{ amount: MONTH, withheld: undefined }]);
    // the budget of another year is left alone, not spent
    expect((await account(userId)).scheduleBudget).toEqual({ anchor: START - 1, credits: 0 });
  });

  it("a clawback and the budget land in one commit; a duplicate of the clawback leaves the ledger as it was", async () => {
    const userId = await annual();
    const entry = { key: "refund#ch_x#100#1", amount: -40_000, bucket: "allowance" as const, reason: "refund" as const };
    const first = await adjustForCharge(fx.deps, userId, async () => ({ entry, scheduleBudget: { anchor: START, credits: 0 } }));
    expect(first.entry).toMatchObject({ key: entry.key, amount: -40_000 });
    expect((await account(userId)).scheduleBudget).toEqual({ anchor: START, credits: 0 });
    // asked again with the same entry: its key is in the ledger, so it decides again from that
    let asked = 0;
    const again = await adjustForCharge(fx.deps, userId, async () => (++asked === 1 ? { entry } : {}));
    expect({ asked, entry: again.entry }).toEqual({ asked: 2, entry: undefined });
    expect((await getBalance(fx.deps, userId)).balance).toBe(SIGNUP - 40_000);
  });

  it("a budget changed while a month is being granted from the old one: the month decides again from the new one", async () => {
    const userId = await annual();
    await adjustForCharge(fx.deps, userId, async () => budgetOnly(MONTH * 5));
    // the refund lands between the grant's read of the account and its commit
    const store = fx.deps.store;
    let raced = false;
    const deps = {
      ...fx.deps,
      store: {
        ...store,
        commit: async (commit: Parameters<typeof store.commit>[0]) => {
          if (!raced && commit.entries.some((entry) => entry.key.startsWith("allowance#"))) {
            raced = true;
            await adjustForCharge(fx.deps, userId, async () => budgetOnly(30_000));
          }
          return store.commit(commit);
        },
      },
    };
    fx.clock.value = Date.UTC(2026, 1, 1, 13);
    const month = await grantAllowanceIfDue(deps, userId);
    expect(raced).toBe(true);
    expect(month.granted && month.entry.amount).toBe(30_000);
    expect((await account(userId)).scheduleBudget).toEqual({ anchor: START, credits: 0 });
  });

  it("a budget is never written without an entry, nor an entry of 0 credits without a budget", async () => {
    const userId = await annual();
    await expect(adjustForCharge(fx.deps, userId, async () => ({ scheduleBudget: { anchor: START, credits: 1 } }))).rejects.toMatchObject({
      code: "VALIDATION_FAILED",
    });
    const zero = { key: "budget#ch_z#1", amount: 0, bucket: "allowance" as const, reason: "refund" as const };
    await expect(adjustForCharge(fx.deps, userId, async () => ({ entry: zero }))).rejects.toMatchObject({ code: "VALIDATION_FAILED" });
    expect((await account(userId)).scheduleBudget).toBeUndefined();
  });

  it("a give-back is a positive reinstate entry; a take is never one", async () => {
    const userId = await annual();
    const given = await adjustForCharge(fx.deps, userId, async () => ({
      entry: { key: "reinstate#re_x", amount: 5_000, bucket: "allowance", reason: "reinstate" },
    }));
    expect(given.entry).toMatchObject({ amount: 5_000, reason: "reinstate" });
    await expect(
      adjustForCharge(fx.deps, userId, async () => ({ entry: { key: "reinstate#re_y", amount: -5_000, bucket: "allowance", reason: "reinstate" } })),
    ).rejects.toMatchObject({ code: "VALIDATION_FAILED" });
    await expect(
      adjustForCharge(fx.deps, userId, async () => ({ entry: { key: "refund#ch_y#1#1", amount: 5_000, bucket: "allowance", reason: "refund" } })),
    ).rejects.toMatchObject({ code: "VALIDATION_FAILED" });
    expect((await getBalance(fx.deps, userId)).balance).toBe(SIGNUP + 5_000);
  });
});
