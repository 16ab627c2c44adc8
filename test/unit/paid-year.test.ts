import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  endYear,
  LAST_SCHEDULED_ANNUAL_MONTH,
  monthGrant,
  type PaidShare,
  type PaidYear,
  paidMonthlyFrom,
  recordPayment,
  shareCredits,
  shareOf,
  withShareBudget,
} from "../../lib/ledger/paid-year.js";

const A = Date.UTC(2026, 0, 1, 12);

/** Records a payment whose months the schedule has not reached (the schedule is elsewhere). */
const withPaidShare = (years: readonly PaidYear[] | undefined, anchor: number, share: Pick<PaidShare, "payment" | "fromMonth" | "monthly">) =>
  recordPayment(years, { anchor: 0, lastGranted: 0 }, anchor, share)?.years;

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
    expect(years?.map((year: PaidYear) => new Date(year.anchor).toISOString().slice(0, 10))).toEqual([
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
    const passed = (schedule: { anchor: number; lastGranted: number }, years: PaidYear[] | undefined, anchor: number, fromMonth: number, monthly: number) => {
      const recorded = recordPayment(years, schedule, anchor, { payment: "late", fromMonth, monthly });
      return { months: recorded?.monthsPassed, credits: recorded?.credits };
    };
    expect(passed({ anchor: A, lastGranted: 5 }, undefined, A, 4, 60_000)).toEqual({ months: 2, credits: 120_000 });
    expect(passed({ anchor: A + 1_000, lastGranted: 5 }, undefined, A, 1, 1)).toEqual({ months: 5, credits: 5 });
    expect(passed({ anchor: A, lastGranted: 3 }, undefined, A, 4, 60_000)).toEqual({ months: 0, credits: 0 });
    // an old year the schedule left: as far as it got there (its lastMonth), not the new year's index
    const old = A - 366 * 86_400_000;
    expect(passed({ anchor: A, lastGranted: 2 }, undefined, old, 1, 1)).toEqual({ months: 0, credits: 0 });
    const reached = [{ anchor: old, shares: [], lastMonth: 11 }];
    expect(passed({ anchor: A, lastGranted: 2 }, reached, old, 11, 60_000)).toEqual({ months: 1, credits: 60_000 });
    // a share that takes (a credited downgrade arriving late) takes its difference from each month it covers
    const paid = withPaidShare(undefined, A, { payment: "invoice#in_1", fromMonth: 1, monthly: 100_000 });
    const four = [1, 2, 3, 4].reduce((years, month) => monthGrant(years, A, month)?.years ?? years, paid ?? []);
    expect(passed({ anchor: A, lastGranted: 4 }, four, A, 3, -60_000)).toEqual({ months: 2, credits: -120_000 });
  });

  it("a share that takes lowers its months by its whole difference, even after the payment it was cut from is refunded", () => {
    let years = withPaidShare(undefined, A, { payment: "invoice#in_1", fromMonth: 1, monthly: 100_000 }) ?? [];
    years = withPaidShare(years, A, { payment: "downgrade#in_2", fromMonth: 3, monthly: -60_000 }) ?? [];
    expect(walk(years).amounts).toEqual([100_000, 100_000, ...Array(9).fill(40_000)]);
    years = withShareBudget(years, A, "invoice#in_1", 0) ?? [];
    // the customer has the annual payment back and keeps the credit: the credit's take stands
    const refunded = walk(years);
    expect(refunded.amounts).toEqual([0, 0, ...Array(9).fill(-60_000)]);
    expect(shareOf(refunded.years, A, "invoice#in_1")).toMatchObject({ granted: 0, withheld: 11 * 100_000 });
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

describe("paid year: the months end the same whatever order the payments arrive in", () => {
  const payments = fc.array(
    fc.record({
      fromMonth: fc.integer({ min: 1, max: 11 }),
      // negative: a credited downgrade (it takes), positive: a payment
      monthly: fc.oneof(fc.integer({ min: 0, max: 200_000 }), fc.integer({ min: -200_000, max: -1 })),
      /** months granted before its event arrives, when it is late (undefined: on time) */
      lateBy: fc.option(fc.integer({ min: 0, max: 11 }), { nil: undefined }),
      /** refunds and disputes bind its budget (credits), and reversals lift it (null), before these months are granted */
      budgets: fc.array(
        fc.record({ month: fc.integer({ min: 1, max: 11 }), credits: fc.option(fc.integer({ min: 0, max: 1_500_000 }), { nil: null }) }),
        { maxLength: 3 },
      ),
    }),
    { minLength: 1, maxLength: 6 },
  );
  type Payment = { fromMonth: number; monthly: number; lateBy: number | undefined; budgets: { month: number; credits: number | null }[] };

  /** Walks the year: each payment recorded once `arrival(p)` months are granted; returns credits moved and the shares. */
  function run(generated: Payment[], arrival: (payment: Payment) => number, checkWithheld = false) {
    let years: PaidYear[] = [];
    let credits = 0;
    const record = (afterMonth: number) =>
      generated.forEach((payment, index) => {
        if (arrival(payment) !== afterMonth) return;
        const recorded = recordPayment(years, { anchor: A, lastGranted: afterMonth }, A, { payment: `p${index}`, fromMonth: payment.fromMonth, monthly: payment.monthly });
        if (!recorded) throw new Error("recorded twice");
        years = recorded.years;
        credits += recorded.credits;
      });
    record(0);
    for (let month = 1; month <= LAST_SCHEDULED_ANNUAL_MONTH; month++) {
      generated.forEach((payment, index) => {
        // budgets bind payments recorded by then (a refund of a payment not recorded yet waits for it)
        if (payment.monthly < 0 || payment.lateBy !== undefined) return;
        for (const budget of payment.budgets.filter((candidate) => candidate.month === month)) {
          years = withShareBudget(years, A, `p${index}`, budget.credits) ?? years;
        }
      });
      // no year yet (nobody has paid): the month is passed over, settled by the payment when it comes
      const grant = monthGrant(years, A, month);
      if (grant) {
        if (checkWithheld) {
          // linear: what the month moves plus what budgets hold back is every covering share's
          // monthly, credits included (a credit takes its whole difference, whatever was refunded)
          const covering = generated.filter((payment) => payment.fromMonth <= month);
          expect(grant.amount + grant.withheld).toBe(covering.reduce((sum, payment) => sum + payment.monthly, 0));
        }
        credits += grant.amount;
        years = grant.years;
      }
      record(month);
    }
    const shares = generated.map((_, index) => {
      const share = shareOf(years, A, `p${index}`);
      return { granted: share?.granted, withheld: share?.withheld, budget: share?.budget };
    });
    return { credits, shares };
  }

  it("property: a payment or a credit that arrives after its months were granted settles them exactly as if it had been in time", () => {
    fc.assert(
      fc.property(payments, (generated) => {
        const inTime = run(generated, (payment) => payment.fromMonth - 1, true);
        const asArrived = run(generated, (payment) => (payment.lateBy === undefined ? payment.fromMonth - 1 : Math.max(payment.fromMonth - 1, payment.lateBy)));
        expect(asArrived).toEqual(inTime);
      }),
      { numRuns: 500 },
    );
  });

  it("property: each share's part of the year depends on that share and its own budgets only (a reversal gives back its own hold-back, never another's)", () => {
    fc.assert(
      fc.property(payments, (generated) => {
        const together = run(generated, (payment) => payment.fromMonth - 1);
        generated.forEach((_payment, index) => {
          const others = generated.map((other, otherIndex) => (otherIndex === index ? other : { ...other, monthly: 0, budgets: [] }));
          const alone = run(others, (candidate) => candidate.fromMonth - 1);
          expect(alone.shares[index]).toEqual(together.shares[index]);
        });
      }),
      { numRuns: 300 },
    );
  });
});

describe("paid year: a year left early grants nothing after its end, however late the end is heard of", () => {
  const shares = fc.array(
    fc.record({
      fromMonth: fc.integer({ min: 1, max: 11 }),
      monthly: fc.oneof(fc.integer({ min: 0, max: 200_000 }), fc.integer({ min: -200_000, max: -1 })),
      /** a refund binds this payment's budget (credits) while this month is granted (payments only) */
      budget: fc.option(fc.record({ month: fc.integer({ min: 1, max: 11 }), credits: fc.integer({ min: 0, max: 1_500_000 }) }), { nil: undefined }),
    }),
    { minLength: 1, maxLength: 5 },
  );
  const ends = fc.record({ endedAfter: fc.integer({ min: 0, max: 10 }), lateBy: fc.integer({ min: 0, max: 11 }) });

  /** Records every share, walks months 1..`reached` (budgets bound on the way), then ends the year after `endedAfter`. */
  function endedLate(generated: { fromMonth: number; monthly: number; budget?: { month: number; credits: number } }[], endedAfter: number, reached: number) {
    let years: PaidYear[] = [];
    generated.forEach((share, index) => {
      years = withPaidShare(years, A, { payment: `p${index}`, fromMonth: share.fromMonth, monthly: share.monthly }) ?? years;
    });
    let credits = 0;
    for (let month = 1; month <= reached; month++) {
      generated.forEach((share, index) => {
        if (share.monthly > 0 && share.budget?.month === month && month <= endedAfter) years = withShareBudget(years, A, `p${index}`, share.budget.credits) ?? years;
      });
      const grant = monthGrant(years, A, month);
      if (!grant) throw new Error("no year");
      credits += grant.amount;
      years = grant.years;
    }
    const ended = endYear(years, A, endedAfter);
    if (!ended) throw new Error("not ended");
    const shareStates = generated.map((_, index) => shareOf(ended.years, A, `p${index}`));
    return { credits: credits + ended.credits, years: ended.years, shares: shareStates };
  }

  it("property: without budgets, months granted after the end are undone exactly: the year is the one an on-time end leaves", () => {
    fc.assert(
      fc.property(shares, ends, (generated, { endedAfter, lateBy }) => {
        const unbudgeted = generated.map(({ budget: _budget, ...share }) => share);
        const reached = Math.min(LAST_SCHEDULED_ANNUAL_MONTH, endedAfter + lateBy);
        const late = endedLate(unbudgeted, endedAfter, reached);
        const onTime = endedLate(unbudgeted, endedAfter, endedAfter);
        expect(late.credits).toBe(onTime.credits);
        expect(late.shares).toEqual(onTime.shares);
        // and nothing after the end grants any more
        expect(monthGrant(late.years, A, endedAfter + 1)).toBeUndefined();
      }),
      { numRuns: 500 },
    );
  });

  it("property: with budgets, each share's gross (granted + held back) is the on-time one; the ledger differs by exactly the granted part", () => {
    fc.assert(
      fc.property(shares, ends, (generated, { endedAfter, lateBy }) => {
        const reached = Math.min(LAST_SCHEDULED_ANNUAL_MONTH, endedAfter + lateBy);
        const late = endedLate(generated, endedAfter, reached);
        const onTime = endedLate(generated, endedAfter, endedAfter);
        let grantedDifference = 0;
        late.shares.forEach((share, index) => {
          const other = onTime.shares[index];
          expect((share?.granted ?? 0) + (share?.withheld ?? 0)).toBe((other?.granted ?? 0) + (other?.withheld ?? 0));
          expect(share?.withheld ?? 0).toBeGreaterThanOrEqual(0);
          grantedDifference += (share?.granted ?? 0) - (other?.granted ?? 0);
        });
        // the clawback of a budgeted (refunded) payment is settled again by billing after the end
        expect(late.credits - onTime.credits).toBe(grantedDifference);
      }),
      { numRuns: 500 },
    );
  });

  it("an end is recorded once: again at that month or later changes nothing, earlier undoes more; a late payment settles only up to the end", () => {
    let years = withPaidShare(undefined, A, { payment: "invoice#in_1", fromMonth: 1, monthly: 40_000 }) ?? [];
    for (let month = 1; month <= 6; month++) years = monthGrant(years, A, month)?.years ?? years;
    const ended = endYear(years, A, 4);
    expect(ended?.credits).toBe(-80_000);
    expect(ended?.monthsUndone).toBe(2);
    expect(endYear(ended?.years, A, 4)).toBeUndefined();
    expect(endYear(ended?.years, A, 9)).toBeUndefined();
    expect(endYear(ended?.years, A, 3)?.credits).toBe(-40_000);
    expect(endYear(ended?.years, A, LAST_SCHEDULED_ANNUAL_MONTH)).toBeUndefined();
    // an upgrade paid late into the ended year settles months 3..4 only, none after the end
    const late = recordPayment(ended?.years, { anchor: 0, lastGranted: 0 }, A, { payment: "upgrade#in_2", fromMonth: 3, monthly: 60_000 });
    expect(late?.credits).toBe(2 * 60_000);
    // a year not recorded yet (its renewal unpaid) is recorded ended, so its payment settles up to the end
    const unpaid = endYear(undefined, A, 2);
    expect(unpaid?.credits).toBe(0);
    expect(recordPayment(unpaid?.years, { anchor: A, lastGranted: 5 }, A, { payment: "invoice#in_3", fromMonth: 1, monthly: 10 })?.credits).toBe(20);
  });
});
