import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  LAST_SCHEDULED_ANNUAL_MONTH,
  monthGrant,
  monthsPassed,
  type PaidYear,
  paidMonthlyFrom,
  shareCredits,
  shareOf,
  withPaidShare,
  withShareBudget,
} from "../../lib/ledger/paid-year.js";

const A = Date.UTC(2026, 0, 1, 12);

/** Walks months 1..11 of the year at `anchor`; returns what each granted and the years after. */
function walk(years: PaidYear[], anchor = A) {
  const amounts: number[] = [];
  let current = years;
  for (let month = 1; month <= LAST_SCHEDULED_ANNUAL_MONTH; month++) {
    const grant = monthGrant(current, anchor, month);
    if (!grant) throw new Error("no year");
    amounts.push(grant.amount);
    current = grant.years;
  }
  return { amounts, years: current };
}

describe("paid year: the months of an annual year grant what was paid for them", () => {
  it("the annual invoice pays months 1..11; an upgrade adds its difference from the month after its own", () => {
    let years = withPaidShare(undefined, A, { payment: "invoice#in_1", fromMonth: 1, monthly: 40_000 }) ?? [];
    years = withPaidShare(years, A, { payment: "upgrade#in_2", fromMonth: 4, monthly: 60_000 }) ?? [];
    expect(walk(years).amounts).toEqual([40_000, 40_000, 40_000, ...Array(8).fill(100_000)]);
    expect(paidMonthlyFrom(years, A, 4)).toBe(100_000);
    expect(paidMonthlyFrom(years, A, 3)).toBe(40_000);
    expect(shareCredits({ fromMonth: 4, monthly: 60_000 })).toBe(8 * 60_000);
    expect(shareCredits({ fromMonth: 12, monthly: 60_000 })).toBe(0);
  });

  it("a year nobody paid for grants nothing (no record), and a payment is recorded once", () => {
    const years = withPaidShare(undefined, A, { payment: "invoice#in_1", fromMonth: 1, monthly: 40_000 });
    expect(monthGrant(years, A + 60_000, 1)).toBeUndefined();
    // the same instant a second off (the invoice line's start against the subscription's) is the same year
    expect(monthGrant(years, A + 1_000, 1)?.amount).toBe(40_000);
    expect(withPaidShare(years, A, { payment: "invoice#in_1", fromMonth: 1, monthly: 99 })).toBeUndefined();
  });

  it("keeps the years that began within 25 months of the newest, however many (portal switches start years)", () => {
    let years: PaidYear[] | undefined;
    const starts = [Date.UTC(2024, 0, 1), Date.UTC(2026, 0, 1), Date.UTC(2026, 2, 20), Date.UTC(2026, 3, 9), Date.UTC(2026, 1, 1)];
    for (const anchor of starts) years = withPaidShare(years, anchor, { payment: `invoice#in_${anchor}`, fromMonth: 1, monthly: 1 });
    expect(years?.map((year) => new Date(year.anchor).toISOString().slice(0, 10))).toEqual([
      "2026-01-01",
      "2026-02-01",
      "2026-03-20",
      "2026-04-09",
    ]);
  });

  it("a payment within 5 seconds of a year's start is recorded in that year, and its budget found there", () => {
    let years = withPaidShare(undefined, A, { payment: "invoice#in_1", fromMonth: 1, monthly: 40_000 }) ?? [];
    years = withPaidShare(years, A + 1_000, { payment: "upgrade#in_2", fromMonth: 4, monthly: 60_000 }) ?? [];
    expect(years.map((year) => [year.anchor, year.shares.length])).toEqual([[A, 2]]);
    years = withShareBudget(years, A + 1_000, "invoice#in_1", 0) ?? [];
    expect(shareOf(years, A, "invoice#in_1")?.budget).toBe(0);
    // further away than the tolerance: another year
    expect(withPaidShare(years, A + 60_000, { payment: "invoice#in_3", fromMonth: 1, monthly: 1 })?.length).toBe(2);
  });

  it("a share's budget limits that share only; lifting it restores full months", () => {
    let years = withPaidShare(undefined, A, { payment: "invoice#in_1", fromMonth: 1, monthly: 40_000 }) ?? [];
    years = withPaidShare(years, A, { payment: "upgrade#in_2", fromMonth: 1, monthly: 60_000 }) ?? [];
    years = withShareBudget(years, A, "invoice#in_1", 50_000) ?? [];
    expect(withShareBudget(years, A, "invoice#in_1", 50_000)).toBeUndefined(); // nothing to write
    expect(withShareBudget(years, A, "invoice#in_unknown", 1)).toBeUndefined();
    const first = monthGrant(years, A, 1);
    const second = monthGrant(first?.years, A, 2);
    expect([first?.amount, first?.withheld, second?.amount, second?.withheld]).toEqual([100_000, 0, 70_000, 30_000]);
    const lifted = withShareBudget(second?.years, A, "invoice#in_1", null);
    expect(shareOf(lifted, A, "invoice#in_1")?.budget).toBeUndefined();
    expect(monthGrant(lifted, A, 3)?.amount).toBe(100_000);
    expect(paidMonthlyFrom(years, A, 1)).toBe(60_000); // a refunded share is not "paid" for an upgrade back
  });

  it("a payment of months already passed settles them with it: in the schedule's year, or in an old year as far as it got", () => {
    expect(monthsPassed({ anchor: A, lastGranted: 5 }, undefined, A, { fromMonth: 4, monthly: 60_000 })).toEqual({ months: 2, credits: 120_000 });
    expect(monthsPassed({ anchor: A + 1_000, lastGranted: 5 }, undefined, A, { fromMonth: 1, monthly: 1 })).toEqual({ months: 5, credits: 5 });
    expect(monthsPassed({ anchor: A, lastGranted: 3 }, undefined, A, { fromMonth: 4, monthly: 60_000 })).toEqual({ months: 0, credits: 0 });
    // an old year the schedule left: as far as it got there (its lastMonth), not the new year's index
    const old = A - 366 * 86_400_000;
    expect(monthsPassed({ anchor: A, lastGranted: 2 }, undefined, old, { fromMonth: 1, monthly: 1 })).toEqual({ months: 0, credits: 0 });
    const reached = [{ anchor: old, shares: [], lastMonth: 11 }];
    expect(monthsPassed({ anchor: A, lastGranted: 2 }, reached, old, { fromMonth: 11, monthly: 60_000 })).toEqual({ months: 1, credits: 60_000 });
    // a share that takes (a credited downgrade arriving late) takes the months it paid back
    expect(monthsPassed({ anchor: A, lastGranted: 4 }, undefined, A, { fromMonth: 4, monthly: -60_000 })).toEqual({ months: 1, credits: -60_000 });
  });

  it("a share that takes lowers its months, never below nothing", () => {
    let years = withPaidShare(undefined, A, { payment: "invoice#in_1", fromMonth: 1, monthly: 100_000 }) ?? [];
    years = withPaidShare(years, A, { payment: "downgrade#in_2", fromMonth: 3, monthly: -60_000 }) ?? [];
    expect(walk(years).amounts).toEqual([100_000, 100_000, ...Array(9).fill(40_000)]);
    years = withShareBudget(years, A, "invoice#in_1", 0) ?? [];
    expect(walk(years).amounts).toEqual(Array(11).fill(0));
  });

  const shares = fc.array(
    fc.record({
      fromMonth: fc.integer({ min: 1, max: 12 }),
      monthly: fc.integer({ min: 0, max: 200_000 }),
      budget: fc.option(fc.integer({ min: 0, max: 3_000_000 }), { nil: undefined }),
    }),
    { minLength: 1, maxLength: 5 },
  );

  it("property: over the year each share grants min(what it buys, its budget), and granted + withheld is what it buys", () => {
    fc.assert(
      fc.property(shares, (generated) => {
        let years: PaidYear[] = [];
        generated.forEach((share, index) => {
          years = withPaidShare(years, A, { payment: `p${index}`, fromMonth: share.fromMonth, monthly: share.monthly }) ?? years;
          if (share.budget !== undefined) years = withShareBudget(years, A, `p${index}`, share.budget) ?? years;
        });
        const { amounts, years: after } = walk(years);
        generated.forEach((share, index) => {
          const bought = shareCredits(share);
          const final = shareOf(after, A, `p${index}`);
          expect(final?.granted).toBe(share.budget === undefined ? bought : Math.min(bought, share.budget));
          expect((final?.granted ?? 0) + (final?.withheld ?? 0)).toBe(bought);
        });
        const total = generated.reduce((sum, share) => sum + (share.budget === undefined ? shareCredits(share) : Math.min(shareCredits(share), share.budget)), 0);
        expect(amounts.reduce((sum, amount) => sum + amount, 0)).toBe(total);
        expect(amounts.every((amount) => amount >= 0)).toBe(true);
      }),
    );
  });
});
