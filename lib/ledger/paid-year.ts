/**
 * The money rule of an annual plan's scheduled months, in one place (pure): a month grants what
 * was *paid* for it, never what the account's plan happens to be. Each payment of an annual year
 * (the annual invoice, an upgrade's proration invoice) adds a share of the months it paid for;
 * month `m` grants the sum of the shares that cover it. So:
 * - an upgrade that was never paid adds no share: the months stay at what was paid;
 * - a downgrade (no money back) removes no share: the months already paid at the higher plan
 *   stay at it until the year ends;
 * - a refunded payment limits its own share (its budget), never another payment's months;
 * - a year nobody paid for (a renewal still `past_due`) has no record: its months grant nothing.
 * Each share counts what it granted and held back, so a refund knows exactly what that payment
 * has granted so far, whatever the year or the account's later plan.
 */

/** What one payment pays for in the scheduled months (1..11) of one annual year. */
export interface PaidShare {
  /** the payment (its invoice id): a list element's value, never a map key */
  payment: string;
  /** the first scheduled month it pays for; months before it were paid by the payment itself (month 0, an upgrade's top-up) */
  fromMonth: number;
  /** credits a month */
  monthly: number;
  /** credits the schedule granted from this share so far */
  granted: number;
  /** credits the share's budget held back from its months so far (never in the ledger) */
  withheld: number;
  /** once a refund or dispute binds it: what its remaining months may still grant in total */
  budget?: number;
}

/** The payments of one annual year, anchored at its period start (epoch ms). */
export interface PaidYear {
  anchor: number;
  shares: PaidShare[];
}

/**
 * An annual plan's schedule grants months 1..11 of its paid year. Month 0 comes with the annual
 * invoice, and the next year's month 0 with the renewal invoice — so the schedule must stop
 * before the renewal date, or a sweep running before the renewal's subscription update arrives
 * would grant that month a second time under the old anchor.
 */
export const LAST_SCHEDULED_ANNUAL_MONTH = 11;

/** How many years an account keeps (the current one and the one before, for late refunds and a late last month). */
export const PAID_YEARS_KEPT = 2;

/** The scheduled months a share pays for: `fromMonth`..11. */
export function shareMonths(share: Pick<PaidShare, "fromMonth">): number {
  return Math.max(0, LAST_SCHEDULED_ANNUAL_MONTH - share.fromMonth + 1);
}

/** Credits a share buys over its months (before any refund). */
export const shareCredits = (share: Pick<PaidShare, "fromMonth" | "monthly">): number => share.monthly * shareMonths(share);

export function yearOf(years: readonly PaidYear[] | undefined, anchor: number): PaidYear | undefined {
  return years?.find((year) => year.anchor === anchor);
}

export function shareOf(years: readonly PaidYear[] | undefined, anchor: number, payment: string): PaidShare | undefined {
  return yearOf(years, anchor)?.shares.find((share) => share.payment === payment);
}

/**
 * The years with one more payment's share (the year is created if it is new; the two newest
 * anchors are kept). A payment already recorded in that year is not added again: `undefined`
 * then, so the caller knows nothing changes.
 */
export function withPaidShare(
  years: readonly PaidYear[] | undefined,
  anchor: number,
  share: Pick<PaidShare, "payment" | "fromMonth" | "monthly">,
): PaidYear[] | undefined {
  if (shareOf(years, anchor, share.payment)) return undefined;
  const added: PaidShare = { payment: share.payment, fromMonth: share.fromMonth, monthly: share.monthly, granted: 0, withheld: 0 };
  const existing = yearOf(years, anchor);
  const others = (years ?? []).filter((year) => year.anchor !== anchor);
  const year: PaidYear = { anchor, shares: [...(existing?.shares ?? []), added] };
  return [...others, year].sort((a, b) => a.anchor - b.anchor).slice(-PAID_YEARS_KEPT);
}

export interface MonthGrant {
  /** credits the month grants (the sum over the shares that cover it, each within its budget) */
  amount: number;
  /** what the budgets held back from this month */
  withheld: number;
  /** the years with each share's counters (and budget) moved by this month */
  years: PaidYear[];
}

/**
 * What scheduled month `month` of the year anchored at `anchor` grants. `undefined` when nobody
 * paid for that year (no record): the month grants nothing.
 */
export function monthGrant(years: readonly PaidYear[] | undefined, anchor: number, month: number): MonthGrant | undefined {
  const year = yearOf(years, anchor);
  if (!year) return undefined;
  let amount = 0;
  let withheld = 0;
  const shares = year.shares.map((share) => {
    if (share.fromMonth > month || month > LAST_SCHEDULED_ANNUAL_MONTH) return share;
    const grants = share.budget === undefined ? share.monthly : Math.min(share.monthly, Math.max(0, share.budget));
    amount += grants;
    withheld += share.monthly - grants;
    const next: PaidShare = { ...share, granted: share.granted + grants, withheld: share.withheld + share.monthly - grants };
    if (share.budget !== undefined) next.budget = share.budget - grants;
    return next;
  });
  return { amount, withheld, years: (years ?? []).map((candidate) => (candidate === year ? { ...year, shares } : candidate)) };
}

/**
 * The years with one share's budget set (`credits`) or lifted (`null`). `undefined` when that
 * share is not recorded, or its budget is that already (nothing to write).
 */
export function withShareBudget(
  years: readonly PaidYear[] | undefined,
  anchor: number,
  payment: string,
  credits: number | null,
): PaidYear[] | undefined {
  const share = shareOf(years, anchor, payment);
  if (!share || (share.budget ?? null) === credits) return undefined;
  const next: PaidShare = { ...share };
  if (credits === null) delete next.budget;
  else next.budget = credits;
  return (years ?? []).map((year) =>
    year.anchor !== anchor ? year : { ...year, shares: year.shares.map((candidate) => (candidate === share ? next : candidate)) },
  );
}

/**
 * The monthly credits paid, and not refunded, for month `month` and every later month of the
 * year: what an annual upgrade to a plan of at most this allowance already has (an upgrade back
 * after a downgrade is not charged again).
 */
export function paidMonthlyFrom(years: readonly PaidYear[] | undefined, anchor: number, month: number): number {
  return (yearOf(years, anchor)?.shares ?? [])
    .filter((share) => share.fromMonth <= month && share.budget === undefined)
    .reduce((sum, share) => sum + share.monthly, 0);
}
