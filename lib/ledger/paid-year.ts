import { periodStart as periodStartOf } from "../periods.js";

/**
 * The money rule of an annual plan's scheduled months, in one place (pure): a month grants what
 * was *paid* for it, never what the account's plan happens to be. Each payment of an annual year
 * (the annual invoice, an upgrade's proration invoice) adds a share of the months it paid for;
 * month `m` grants the sum of the shares that cover it. So:
 * - an upgrade that was never paid adds no share: the months stay at what was paid;
 * - a downgrade (no money back) removes no share: the months already paid at the higher plan
 *   stay at it until the year ends;
 * - a refunded payment limits its own share (its budget), never another payment's months;
 * - a year nobody paid for (a renewal still `past_due`) has no record: its months grant nothing;
 * - a credited downgrade adds a share that takes its difference from every later month, whatever
 *   else happened to the year (linear: see `monthGrant`);
 * - a payment that arrives after some of its months were granted settles each of them as it would
 *   have gone had the payment been in time: the ledger never depends on arrival order.
 * Each share counts what it granted and held back, per month, so a refund knows exactly what that
 * payment has granted so far, whatever the year or the account's later plan.
 */

/** What one payment pays for in the scheduled months (1..11) of one annual year (negative: what a credit gave back). */
export interface PaidShare {
  /** the payment (its invoice id): a list element's value, never a map key */
  payment: string;
  /** the first scheduled month it pays for; months before it were paid by the payment itself (month 0, an upgrade's top-up) */
  fromMonth: number;
  /** credits a month */
  monthly: number;
  /** credits the schedule granted from this share so far (a share that takes: what it took, ≤ 0) */
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
  /**
   * The year was left before its end (a portal switch to another interval or period, a
   * cancellation) while this month was in progress: no later month grants from it.
   */
  endedAfter?: number;
  /**
   * The Stripe subscription whose annual period this year is (from its annual invoice): only that
   * subscription's periods can show it was left (a user may have two subscriptions at once).
   */
  subscription?: string;
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

/**
 * The year at `anchor` (as `yearOf`) unless it is another subscription's year starting a few
 * seconds away: two subscriptions of one user started seconds apart have two years.
 */
export function ownYear(years: readonly PaidYear[] | undefined, anchor: number, subscription: string | undefined): PaidYear | undefined {
  const near = yearOf(years, anchor);
  return near && subscription && near.subscription && near.subscription !== subscription && near.anchor !== anchor ? undefined : near;
}

export function shareOf(years: readonly PaidYear[] | undefined, anchor: number, payment: string): PaidShare | undefined {
  return yearOf(years, anchor)?.shares.find((share) => share.payment === payment);
}

/**
 * How far the schedule got in the year at `anchor`: the year's `lastMonth`, or for the year the
 * schedule is in, its `periodIndex` (months passed over unpaid leave no record).
 */
export function monthReached(schedule: { anchor: number; lastGranted: number }, years: readonly PaidYear[] | undefined, anchor: number): number {
  const sameYear = Math.abs(schedule.anchor - anchor) <= ANCHOR_TOLERANCE_MS;
  const year = yearOf(years, anchor);
  const reached = Math.max(year?.lastMonth ?? 0, sameYear ? schedule.lastGranted : 0);
  return Math.min(LAST_SCHEDULED_ANNUAL_MONTH, year?.endedAfter ?? LAST_SCHEDULED_ANNUAL_MONTH, reached);
}

export interface EndedYear {
  /** the years with the year at `anchor` ended, its months up to the end settled and those after undone on each share */
  years: PaidYear[];
  /** what that moves in the ledger: months up to the end the schedule had not reached (granted), less months after it it had (undone) */
  credits: number;
  /** how many months up to the end were granted now */
  monthsGranted: number;
  /** how many months after the end the schedule had reached */
  monthsUndone: number;
}

/**
 * The year at `anchor` ended while month `afterMonth` was in progress (a portal switch to another
 * interval or period, an immediate cancellation): Stripe stopped billing it there, so no later
 * month may grant from it, and every month up to it was paid for.
 * - Months up to the end the schedule had not reached (a sweep running late past a month
 *   boundary; a year the schedule never followed, because the switch into it was heard of only
 *   with its cancellation) are settled now, as the schedule would have granted them (a year
 *   nobody paid for records them as passed over, for its payment to settle).
 * - Months after the end that the schedule reached anyway (the switch's events arrived after a
 *   month boundary, or a lazy grant ran between the switch and its webhook) are undone on every
 *   share, so the year is the one an on-time switch would have left. Each share covered each such
 *   month with exactly its monthly (granted + held back by its budget), so its gross
 *   (`granted + withheld`) goes back by exactly monthly × months; which part was granted and which
 *   held back is not recorded per month, so it is taken from what the share held back first (a
 *   budget holds back the latest months first). The split changes only the year-end entry: a share
 *   with a budget belongs to a refunded or disputed payment, and the caller moves that charge's
 *   clawbacks to what its facts say for the year's new gross (lib/billing/refunds.ts,
 *   `settleYearEndClaws`), which nets the same whatever the split.
 * A year not recorded yet is recorded ended (a payment arriving later settles only months up to
 * the end). `undefined` when the year ended there or earlier already, or ends after its last month.
 */
export function endYear(years: readonly PaidYear[] | undefined, anchor: number, afterMonth: number, subscription?: string): EndedYear | undefined {
  const found = ownYear(years, anchor, subscription);
  if (afterMonth >= LAST_SCHEDULED_ANNUAL_MONTH || (found?.endedAfter !== undefined && found.endedAfter <= afterMonth)) return undefined;
  let current: readonly PaidYear[] = years ?? [];
  let credits = 0;
  let monthsGranted = 0;
  // another subscription's year seconds away is not this one: this one is recorded at its own anchor
  const yearAnchor = found?.anchor ?? anchor;
  for (let month = (found?.lastMonth ?? 0) + 1; found && month <= afterMonth; month++) {
    const grant = monthGrant(current, yearAnchor, month);
    if (!grant) {
      current = withMonthPassedOver(current, yearAnchor, afterMonth);
      break;
    }
    credits += grant.amount;
    monthsGranted += 1;
    current = grant.years;
  }
  const existing = found ? yearOf(current, yearAnchor) : undefined;
  // a year not recorded yet (nobody paid for it yet) passed its months up to the end unpaid: its
  // payment, if it comes, settles them
  const reached = existing ? (existing.lastMonth ?? 0) : afterMonth;
  let monthsUndone = 0;
  const shares = (existing?.shares ?? []).map((share) => {
    const months = Math.max(0, reached - Math.max(afterMonth + 1, share.fromMonth) + 1);
    if (months === 0) return share;
    monthsUndone = Math.max(monthsUndone, months);
    const gross = months * share.monthly;
    const withheldBack = share.monthly > 0 ? Math.min(share.withheld, gross) : 0;
    const grantedBack = gross - withheldBack;
    credits -= grantedBack;
    const next: PaidShare = { ...share, granted: share.granted - grantedBack, withheld: share.withheld - withheldBack };
    if (share.budget !== undefined) next.budget = share.budget + grantedBack;
    return next;
  });
  const lastMonth = Math.min(reached, afterMonth);
  const ended: PaidYear = {
    ...existing,
    anchor: existing?.anchor ?? anchor,
    shares,
    endedAfter: afterMonth,
    ...(lastMonth > 0 ? { lastMonth } : {}),
    ...(!existing?.subscription && subscription ? { subscription } : {}),
  };
  if (lastMonth <= 0) delete ended.lastMonth;
  return { years: withYear(current, existing, ended), credits, monthsGranted, monthsUndone };
}

/**
 * The years (their anchors) of subscription `subscription` that its period starting at
 * `periodStart` shows were left before their end: those it starts strictly inside of (a portal
 * switch restarts the billing cycle; a renewal starts where the year ends, and a year's own period
 * where it starts). Another subscription's periods say nothing about a year (a user may have two).
 */
export function yearsLeftBy(years: readonly PaidYear[] | undefined, subscription: string, periodStart: number): number[] {
  return (years ?? [])
    .filter((year) => {
      if (year.subscription !== subscription) return false;
      const yearEnd = periodStartOf(year.anchor, LAST_SCHEDULED_ANNUAL_MONTH + 1, { kind: "calendarMonth" });
      return periodStart > year.anchor + ANCHOR_TOLERANCE_MS && periodStart < yearEnd - ANCHOR_TOLERANCE_MS;
    })
    .map((year) => year.anchor);
}

export interface RecordedPayment {
  /** the years with the payment's share, its passed months settled */
  years: PaidYear[];
  /** how many of its months the schedule had already passed */
  monthsPassed: number;
  /** what settling them moves now (negative: a credit takes back what those months granted) */
  credits: number;
}

/**
 * Records one payment's share in its year (the year is created if it is new; the years of the last
 * 25 months are kept) and settles the months of it the schedule has already passed (up to
 * `reached`): an upgrade or a renewal paid late, a downgrade's credit delivered late. The rule is
 * linear (see `monthGrant`): a share's part of a month depends on that share alone, and a payment
 * has no budget when it is recorded (a refund that came first waits for it), so each passed month
 * settles at the share's full monthly — as it would have gone had the payment arrived in time.
 * `undefined` when the payment is recorded already (nothing changes).
 */
export function recordPayment(
  years: readonly PaidYear[] | undefined,
  schedule: { anchor: number; lastGranted: number },
  anchor: number,
  share: Pick<PaidShare, "payment" | "fromMonth" | "monthly">,
  subscription?: string,
): RecordedPayment | undefined {
  if (shareOf(years, anchor, share.payment)) return undefined;
  // how far its own year got (another subscription's year seconds away says nothing of it: then
  // only a schedule anchored exactly at this year does)
  const foreign = yearOf(years, anchor) !== ownYear(years, anchor, subscription);
  const reached = foreign ? (schedule.anchor === anchor ? Math.min(LAST_SCHEDULED_ANNUAL_MONTH, schedule.lastGranted) : 0) : monthReached(schedule, years, anchor);
  const monthsPassed = Math.max(0, reached - share.fromMonth + 1);
  const credits = monthsPassed === 0 ? 0 : monthsPassed * share.monthly; // never -0 (a credit share with no month passed)
  const added: PaidShare = { payment: share.payment, fromMonth: share.fromMonth, monthly: share.monthly, granted: credits, withheld: 0 };
  // the year that starts at this instant, or within the tolerance (the same year, seen through
  // another object's clock: an upgrade's anchor is the subscription's start, the annual invoice's
  // its line's); a year starting further away is another year, however close — and so is another
  // subscription's year, however close (two subscriptions of one user started seconds apart)
  const existing = ownYear(years, anchor, subscription);
  const lastMonth = Math.max(existing?.lastMonth ?? 0, monthsPassed > 0 ? reached : 0);
  const year: PaidYear = {
    anchor: existing?.anchor ?? anchor,
    shares: [...(existing?.shares ?? []), added],
    ...(lastMonth > 0 ? { lastMonth } : {}),
    ...(existing?.endedAfter !== undefined ? { endedAfter: existing.endedAfter } : {}),
    ...((existing?.subscription ?? subscription) ? { subscription: existing?.subscription ?? subscription } : {}),
  };
  return { years: withYear(years, existing, year), monthsPassed, credits };
}

/** The years with `year` in place of `existing` (or added), sorted, only those kept (see `PAID_YEARS_KEPT`). */
function withYear(years: readonly PaidYear[] | undefined, existing: PaidYear | undefined, year: PaidYear): PaidYear[] {
  const all = [...(years ?? []).filter((candidate) => candidate !== existing), year].sort((a, b) => a.anchor - b.anchor);
  const newest = all.at(-1)?.anchor ?? year.anchor;
  return all.filter((kept) => kept.anchor >= newest - KEEP_WINDOW_MS).slice(-PAID_YEARS_KEPT);
}

/**
 * The years with month `month` of the year at `anchor` passed over unpaid (nobody has paid for
 * that year yet: a renewal still past due). The year is recorded without shares, so its payment
 * settles that month when it comes, even after the schedule left the year (a cancellation).
 */
export function withMonthPassedOver(years: readonly PaidYear[] | undefined, anchor: number, month: number): PaidYear[] {
  const existing = yearOf(years, anchor);
  if (existing?.endedAfter !== undefined && month > existing.endedAfter) return [...(years ?? [])];
  const year: PaidYear = { ...existing, anchor: existing?.anchor ?? anchor, shares: existing?.shares ?? [], lastMonth: Math.max(existing?.lastMonth ?? 0, month) };
  return withYear(years, existing, year);
}

export interface MonthGrant {
  /** credits the month moves (what its shares paid for it, within budgets, less what credits take; below zero only after a refund of what a credit was cut from) */
  amount: number;
  /** what the budgets held back from this month */
  withheld: number;
  /** the years with each share's counters (and budget) moved by this month */
  years: PaidYear[];
}

/**
 * What scheduled month `month` of the year anchored at `anchor` grants. `undefined` when nobody
 * paid for that year (no payment recorded), the year was left before that month, or the year
 * reached that month already: the month grants nothing (more).
 *
 * Each paying share grants its monthly within its budget; a share that takes (a credited
 * downgrade) takes its whole monthly difference, whatever else happened to the year: the money it
 * stands for went back to the customer (as Stripe credit) even when a refund or a dispute took the
 * payment it was cut from, so after both the month may move below zero. That keeps the rule
 * linear — each share's part of a month depends on that share alone — which is what makes the
 * year's ledger the same in any order the payments, credits, refunds and disputes arrive in (a
 * "never below zero" clamp made it depend on what came first), and what lets `recordPayment`
 * settle a late payment's passed months without re-evaluating them.
 */
export function monthGrant(years: readonly PaidYear[] | undefined, anchor: number, month: number): MonthGrant | undefined {
  const year = yearOf(years, anchor);
  // no payment recorded for the year (at most months passed over): nobody has paid for it
  if (!year || year.shares.length === 0) return undefined;
  // a year left early has nothing paid after its end (the schedule has normally left it already)
  if (year.endedAfter !== undefined && month > year.endedAfter) return undefined;
  // a month the year has reached is settled for every share (granted, settled with a late payment,
  // or by the year's end): a schedule re-anchored at the same year (unpaid → paid again) must not
  // grant it twice
  if (month <= (year.lastMonth ?? 0)) return undefined;
  let amount = 0;
  let withheld = 0;
  const shares = year.shares.map((share) => {
    if (share.fromMonth > month || month > LAST_SCHEDULED_ANNUAL_MONTH) return share;
    const grants = share.monthly < 0 || share.budget === undefined ? share.monthly : Math.min(share.monthly, Math.max(0, share.budget));
    amount += grants;
    withheld += share.monthly - grants;
    const next: PaidShare = { ...share, granted: share.granted + grants, withheld: share.withheld + share.monthly - grants };
    if (share.budget !== undefined) next.budget = share.budget - grants;
    return next;
  });
  const reached: PaidYear = { ...year, shares, lastMonth: Math.max(year.lastMonth ?? 0, month) };
  return { amount, withheld, years: (years ?? []).map((candidate) => (candidate === year ? reached : candidate)) };
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
