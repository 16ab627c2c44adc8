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

/** What one payment pays for in the scheduled months (1..11) of one annual year (negative: what a credit gave back). */
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
  /** the last scheduled month the schedule reached in this year (granted from its shares) */
  lastMonth?: number;
}

/**
 * An annual plan's schedule grants months 1..11 of its paid year. Month 0 comes with the annual
 * invoice, and the next year's month 0 with the renewal invoice — so the schedule must stop
 * before the renewal date, or a sweep running before the renewal's subscription update arrives
 * would grant that month a second time under the old anchor.
 */
export const LAST_SCHEDULED_ANNUAL_MONTH = 11;

/**
 * Which years an account keeps: those that began within the 25 months before the newest one (the
 * current year and the one before, for late refunds and a late last month, however often the
 * plan was switched between monthly and annual meanwhile, each switch starting a year), at most
 * `PAID_YEARS_KEPT` (an item-size guard: each portal switch to annual is a paid year). A refund of
 * a payment whose year is no longer kept is taken as if all its months were granted.
 */
export const PAID_YEARS_KEPT = 64;
const KEEP_WINDOW_MS = 25 * 31 * 86_400_000;

/**
 * How far apart the start of a paid year (its invoice line's period start) and the schedule's
 * anchor (the subscription's period start) may be and still be found as that year: Stripe sends
 * the same instant, but a year whose months all grant nothing over a rounding difference would be
 * a silent loss, and so would a payment recorded beside its year instead of in it. Small, because
 * two years can start minutes apart (annual → monthly → annual in the portal): two years within
 * 5 seconds are taken to be one.
 */
export const ANCHOR_TOLERANCE_MS = 5_000;

/** The scheduled months a share pays for: `fromMonth`..11. */
export function shareMonths(share: Pick<PaidShare, "fromMonth">): number {
  return Math.max(0, LAST_SCHEDULED_ANNUAL_MONTH - share.fromMonth + 1);
}

/** Credits a share buys over its months (before any refund). */
export const shareCredits = (share: Pick<PaidShare, "fromMonth" | "monthly">): number => share.monthly * shareMonths(share);

/** The year that starts at `anchor` (exactly, else the nearest within `ANCHOR_TOLERANCE_MS`). */
export function yearOf(years: readonly PaidYear[] | undefined, anchor: number): PaidYear | undefined {
  const exact = years?.find((year) => year.anchor === anchor);
  if (exact || !years) return exact;
  const near = years
    .filter((year) => Math.abs(year.anchor - anchor) <= ANCHOR_TOLERANCE_MS)
    .sort((a, b) => Math.abs(a.anchor - anchor) - Math.abs(b.anchor - anchor));
  return near[0];
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
  share: Pick<PaidShare, "payment" | "fromMonth" | "monthly"> & { granted?: number },
): PaidYear[] | undefined {
  if (shareOf(years, anchor, share.payment)) return undefined;
  const added: PaidShare = {
    payment: share.payment,
    fromMonth: share.fromMonth,
    monthly: share.monthly,
    granted: share.granted ?? 0,
    withheld: 0,
  };
  // the year that starts at this instant, or within the tolerance (the same year, seen through
  // another object's clock: an upgrade's anchor is the subscription's start, the annual invoice's
  // its line's); a year starting further away is another year, however close
  const existing = yearOf(years, anchor);
  const others = (years ?? []).filter((year) => year !== existing);
  const year: PaidYear = { ...existing, anchor: existing?.anchor ?? anchor, shares: [...(existing?.shares ?? []), added] };
  const all = [...others, year].sort((a, b) => a.anchor - b.anchor);
  const newest = all.at(-1)?.anchor ?? anchor;
  return all.filter((kept) => kept.anchor >= newest - KEEP_WINDOW_MS).slice(-PAID_YEARS_KEPT);
}

/**
 * The scheduled months a payment's share covers that the schedule has already passed in its year
 * (granted without it, or passed over unpaid): an upgrade or a renewal paid late, a downgrade's
 * credit arriving late. They are settled with the payment, once — granted, or for a share that
 * takes (a credited downgrade) taken back — so what a month grants never depends on when the
 * payment's event arrived. How far the schedule got in that year is the year's `lastMonth`, or for
 * the year the schedule is in, its `periodIndex` (months passed over unpaid leave no record).
 */
export function monthsPassed(
  schedule: { anchor: number; lastGranted: number },
  years: readonly PaidYear[] | undefined,
  anchor: number,
  share: Pick<PaidShare, "fromMonth" | "monthly">,
): { months: number; credits: number } {
  const sameYear = Math.abs(schedule.anchor - anchor) <= ANCHOR_TOLERANCE_MS;
  const reached = Math.max(yearOf(years, anchor)?.lastMonth ?? 0, sameYear ? schedule.lastGranted : 0);
  const months = Math.max(0, Math.min(reached, LAST_SCHEDULED_ANNUAL_MONTH) - share.fromMonth + 1);
  return { months, credits: months * share.monthly };
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
    // a share that takes (a downgrade whose difference went back as credit) lowers the month
    const grants = share.monthly < 0 || share.budget === undefined ? share.monthly : Math.min(share.monthly, Math.max(0, share.budget));
    amount += grants;
    withheld += share.monthly - grants;
    const next: PaidShare = { ...share, granted: share.granted + grants, withheld: share.withheld + share.monthly - grants };
    if (share.budget !== undefined) next.budget = share.budget - grants;
    return next;
  });
  // never below nothing (a credit larger than what the month still pays, after a refund)
  const reached = { ...year, shares, lastMonth: Math.max(year.lastMonth ?? 0, month) };
  return { amount: Math.max(0, amount), withheld, years: (years ?? []).map((candidate) => (candidate === year ? reached : candidate)) };
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
    year.shares.includes(share) ? { ...year, shares: year.shares.map((candidate) => (candidate === share ? next : candidate)) } : year,
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
