import { describe, expect, it } from "vitest";
import { adjustForCharge } from "../../lib/ledger/charge-adjust.js";
import { auditAccount, changePlanSchedule, getBalance, grantAllowanceIfDue, grantCredits } from "../../lib/ledger/index.js";
import { shareOf, withShareBudget } from "../../lib/ledger/paid-year.js";
import { START, uniqueUser, useLedgerFixture } from "../helpers/ledger.js";

/**
 * The ledger side of an annual year's paid months (lib/ledger/paid-year.ts): each payment records
 * its share with its grant; grantAllowanceIfDue grants a month from the shares that cover it and
 * spends a refunded share's budget in the same commit; adjustForCharge writes a budget with a
 * clawback's credits. A pro year: 100,000 a month.
 */
const fx = useLedgerFixture();

const MONTH = 100_000;
const SIGNUP = 10_000;
const INVOICE = "invoice#in_year";
const account = async (userId: string) => {
  const stored = await fx.deps.store.getAccount(userId);
  if (!stored) throw new Error(`no account ${userId}`);
  return stored;
};
/** the annual invoice's share budget */
const budgetOf = async (userId: string) => shareOf((await account(userId)).paidYears, START, INVOICE)?.budget;
let serial = 0;
/** The annual invoice's share budget as billing writes it when no credits move: with an entry of 0 credits. */
const budgetOnly = (credits: number | null, anchor = START) => async (stored: Awaited<ReturnType<typeof account>>) => {
  const paidYears = withShareBudget(stored.paidYears, anchor, INVOICE, credits);
  return {
    entry: { key: `budget#ch_test#${++serial}`, amount: 0, bucket: "allowance" as const, reason: "refund" as const },
    ...(paidYears ? { paidYears } : {}),
  };
};

/** The annual invoice's grant: month 0, with months 1..11 paid (its share). */
const grantAnnualInvoice = (userId: string) =>
  grantCredits(fx.deps, {
    userId,
    key: INVOICE,
    amount: MONTH,
    bucket: "allowance",
    reason: "invoice",
    paidShare: { anchor: START, fromMonth: 1, monthly: MONTH },
  });

/** A user on pro annual anchored at START whose annual invoice granted month 0 and paid months 1..11. */
async function annual() {
  const userId = uniqueUser("budget");
  fx.clock.value = START;
  await changePlanSchedule(fx.deps, { userId, plan: "pro", interval: "year", periodStart: START });
  await grantAnnualInvoice(userId);
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

describe("an annual year's paid months", () => {
  it("months grant at most the budget and spend it; what a month holds back is named on its entry", async () => {
    const userId = await annual();
    await adjustForCharge(fx.deps, userId, budgetOnly(150_000));
    expect(await months(userId, 1, 3)).toEqual([
      { amount: MONTH, withheld: undefined },
      { amount: 50_000, withheld: 50_000 },
      { amount: 0, withheld: MONTH },
    ]);
    expect(await budgetOf(userId)).toBe(0);
    expect((await getBalance(fx.deps, userId)).balance).toBe(SIGNUP + MONTH + 150_000);
    expect((await auditAccount(fx.deps, userId)).problems).toEqual([]);
  });

  it("a budget no longer needed is removed, with its entry; the months then grant in full", async () => {
    const userId = await annual();
    await adjustForCharge(fx.deps, userId, budgetOnly(0));
    expect(await months(userId, 1, 1)).toEqual([{ amount: 0, withheld: MONTH }]);
    const removed = await adjustForCharge(fx.deps, userId, budgetOnly(null));
    expect(removed.entry).toMatchObject({ amount: 0, reason: "refund" });
    expect(await budgetOf(userId)).toBeUndefined();
    expect(await months(userId, 2, 2)).toEqual([{ amount: MONTH, withheld: undefined }]);
  });

  it("a month grants what its year's shares pay for it, not the account's plan; a year nobody paid for grants nothing", async () => {
    const userId = await annual();
    // an upgrade paid in month 2 pays 60,000 more for months 3..11 (its top-up covered month 2)
    fx.clock.value = Date.UTC(2026, 2, 10);
    await grantCredits(fx.deps, {
      userId,
      key: "upgrade#in_up",
      amount: 1,
      bucket: "allowance",
      reason: "upgrade",
      paidShare: { anchor: START, fromMonth: 3, monthly: 60_000 },
    });
    // the account's plan says "plus" (a downgrade, no money back): the months stay at what was paid
    await changePlanSchedule(fx.deps, { userId, plan: "plus", interval: "year", periodStart: START });
    expect((await months(userId, 1, 4)).map((month) => month.amount)).toEqual([MONTH, MONTH, MONTH + 60_000, MONTH + 60_000]);
    const shares = (await account(userId)).paidYears?.[0]?.shares;
    expect(shares?.map((share) => [share.payment, share.granted])).toEqual([
      [INVOICE, 4 * MONTH],
      ["upgrade#in_up", 2 * 60_000],
    ]);
    // the next year is not paid (renewal past due): its month passes without a grant
    await changePlanSchedule(fx.deps, { userId, plan: "plus", interval: "year", periodStart: Date.UTC(2027, 0, 1, 12) });
    fx.clock.value = Date.UTC(2027, 1, 1, 13);
    const before = (await getBalance(fx.deps, userId)).balance;
    expect(await grantAllowanceIfDue(fx.deps, userId)).toEqual({ granted: false });
    expect((await getBalance(fx.deps, userId)).balance).toBe(before);
    expect((await account(userId)).nextGrantAt).toBe(Date.UTC(2027, 2, 1, 12)); // the schedule moved on, not stuck due
    expect((await auditAccount(fx.deps, userId)).problems).toEqual([]);
  });

  it("a payment's share is recorded once, with its grant; years older than 25 months before the newest are dropped", async () => {
    const userId = await annual();
    const again = await grantAnnualInvoice(userId);
    expect(again.applied).toBe(false);
    expect((await account(userId)).paidYears).toHaveLength(1);
    for (const year of [2028, 2029]) {
      await grantCredits(fx.deps, {
        userId,
        key: `invoice#in_${year}`,
        amount: MONTH,
        bucket: "allowance",
        reason: "invoice",
        paidShare: { anchor: Date.UTC(year, 0, 1, 12), fromMonth: 1, monthly: MONTH },
      });
    }
    expect((await account(userId)).paidYears?.map((year) => year.anchor)).toEqual([Date.UTC(2028, 0, 1, 12), Date.UTC(2029, 0, 1, 12)]);
  });

  it("a clawback and the budget land in one commit; a duplicate of the clawback leaves the ledger as it was", async () => {
    const userId = await annual();
    const entry = { key: "refund#ch_x#100#1", amount: -40_000, bucket: "allowance" as const, reason: "refund" as const };
    const first = await adjustForCharge(fx.deps, userId, async (stored) => ({
      entry,
      paidYears: withShareBudget(stored.paidYears, START, INVOICE, 0),
    }));
    expect(first.entry).toMatchObject({ key: entry.key, amount: -40_000 });
    expect(await budgetOf(userId)).toBe(0);
    // asked again with the same entry: its key is in the ledger, so it decides again from that
    let asked = 0;
    const again = await adjustForCharge(fx.deps, userId, async () => (++asked === 1 ? { entry } : {}));
    expect({ asked, entry: again.entry }).toEqual({ asked: 2, entry: undefined });
    expect((await getBalance(fx.deps, userId)).balance).toBe(SIGNUP + MONTH - 40_000);
  });

  it("a budget changed while a month is being granted from the old one: the month decides again from the new one", async () => {
    const userId = await annual();
    await adjustForCharge(fx.deps, userId, budgetOnly(MONTH * 5));
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
            await adjustForCharge(fx.deps, userId, budgetOnly(30_000));
          }
          return store.commit(commit);
        },
      },
    };
    fx.clock.value = Date.UTC(2026, 1, 1, 13);
    const month = await grantAllowanceIfDue(deps, userId);
    expect(raced).toBe(true);
    expect(month.granted && month.entry.amount).toBe(30_000);
    expect(await budgetOf(userId)).toBe(0);
  });

  it("a budget is never written without an entry, nor an entry of 0 credits without a budget", async () => {
    const userId = await annual();
    await expect(
      adjustForCharge(fx.deps, userId, async (stored) => ({ paidYears: withShareBudget(stored.paidYears, START, INVOICE, 1) })),
    ).rejects.toMatchObject({ code: "VALIDATION_FAILED" });
    const zero = { key: "budget#ch_z#1", amount: 0, bucket: "allowance" as const, reason: "refund" as const };
    await expect(adjustForCharge(fx.deps, userId, async () => ({ entry: zero }))).rejects.toMatchObject({ code: "VALIDATION_FAILED" });
    expect(await budgetOf(userId)).toBeUndefined();
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
    expect((await getBalance(fx.deps, userId)).balance).toBe(SIGNUP + MONTH + 5_000);
  });
});
