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
 * - a credited downgrade adds a share that takes, from what the month's payments grant and never
 *   more (a month is never below nothing);
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
  /** credits the schedule granted from this share so far (the sum of `byMonth`) */
  granted: number;
  /** credits the share's budget held back from its months so far, never in the ledger (the sum of `withheldByMonth`) */
  withheld: number;
  /** once a refund or dispute binds it: what its remaining months may still grant in total */
  budget?: number;
  /** per scheduled month (index: the month): what the share granted in it (a share that takes: what it took, ≤ 0) */
  byMonth?: number[];
  /** per scheduled month: what the share's budget held back from it, net of what credits would have taken */
  withheldByMonth?: number[];
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

/** The months of a year, as a dense list (DynamoDB lists have no holes), index = the month. */
const MONTH_SLOTS = LAST_SCHEDULED_ANNUAL_MONTH + 1;
const valueAt = (list: readonly number[] | undefined, month: number): number => list?.[month] ?? 0;
function withValueAt(list: readonly number[] | undefined, month: number, value: number): number[] {
  const next = Array.from({ length: MONTH_SLOTS }, (_, index) => valueAt(list, index));
  next[month] = value;
  return next;
}

/** The order shares take and are held back in: by first month, then payment (never arrival order). */
const canonical = (a: PaidShare, b: PaidShare) => a.fromMonth - b.fromMonth || (a.payment < b.payment ? -1 : a.payment > b.payment ? 1 : 0);

/** What one scheduled month of a year grants, and every share's part in it. */
interface MonthOutcome {
  shares: PaidShare[];
  /** credits the month grants in all (never below zero) */
  amount: number;
  /** what budgets held back from it, net of what credits would have taken */
  withheld: number;
}

/**
 * One month of a year, from what each paying share grants in it (`grossOf`: its monthly within its
 * budget for a month being granted, its recorded grant for a month passed before). A share that
 * takes (a credited downgrade) takes from what the paying shares grant that month, never more: a
 * month grants nothing below zero, and what a credit could not take is not taken later either.
 * What budgets held back is counted net of those credits — what the month would have granted
 * without the budgets, less what it grants — so a reversal gives back exactly that. Each share
 * records its part per month (`byMonth`, `withheldByMonth`), so a payment arriving after its
 * months (an upgrade paid late, a credit delivered late) can settle each month exactly as it would
 * have gone had the payment arrived in time: the ledger never depends on arrival order.
 */
function evaluateMonth(shares: readonly PaidShare[], month: number, grossOf: (share: PaidShare) => number): MonthOutcome {
  const covering = shares.filter((share) => share.fromMonth <= month && month <= LAST_SCHEDULED_ANNUAL_MONTH).sort(canonical);
  const paying = covering.filter((share) => share.monthly >= 0);
  const taking = covering.filter((share) => share.monthly < 0);
  const gross = new Map(paying.map((share) => [share, grossOf(share)]));
  const granted = [...gross.values()].reduce((sum, value) => sum + value, 0);
  const credits = taking.reduce((sum, share) => sum - share.monthly, 0);
  const part = new Map<PaidShare, { value: number; withheld: number }>();
  let takeLeft = Math.min(credits, granted);
  for (const share of taking) {
    const take = Math.min(-share.monthly, takeLeft);
    takeLeft -= take;
    part.set(share, { value: -take, withheld: 0 });
  }
  const amount = granted - Math.min(credits, granted);
  const wouldGrant = Math.max(0, paying.reduce((sum, share) => sum + share.monthly, 0) - credits);
  let withheldLeft = Math.max(0, wouldGrant - amount);
  const withheld = withheldLeft;
  for (const share of paying) {
    const value = gross.get(share) ?? 0;
    const held = Math.min(share.monthly - value, withheldLeft);
    withheldLeft -= held;
    part.set(share, { value, withheld: held });
  }
  const next = shares.map((share) => {
    const moved = part.get(share);
    if (!moved) return share;
    const before = valueAt(share.byMonth, month);
    const heldBefore = valueAt(share.withheldByMonth, month);
    const updated: PaidShare = {
      ...share,
      granted: share.granted + moved.value - before,
      withheld: share.withheld + moved.withheld - heldBefore,
      byMonth: withValueAt(share.byMonth, month, moved.value),
      withheldByMonth: withValueAt(share.withheldByMonth, month, moved.withheld),
    };
    if (share.budget !== undefined) updated.budget = share.budget - (moved.value - before);
    return updated;
  });
  return { shares: next, amount, withheld };
}

/** What a month granted, as recorded on the shares. */
const recordedAmount = (shares: readonly PaidShare[], month: number) => shares.reduce((sum, share) => sum + valueAt(share.byMonth, month), 0);

/**
 * How far the schedule got in the year at `anchor`: the year's `lastMonth`, or for the year the
 * schedule is in, its `periodIndex` (months passed over unpaid leave no record).
 */
export function monthReached(schedule: { anchor: number; lastGranted: number }, years: readonly PaidYear[] | undefined, anchor: number): number {
  const sameYear = Math.abs(schedule.anchor - anchor) <= ANCHOR_TOLERANCE_MS;
  return Math.min(LAST_SCHEDULED_ANNUAL_MONTH, Math.max(yearOf(years, anchor)?.lastMonth ?? 0, sameYear ? schedule.lastGranted : 0));
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
 * `reached`): an upgrade or a renewal paid late, a downgrade's credit delivered late. Each passed
 * month is evaluated again with the share, from what the other shares recorded for it, so it ends
 * as it would have had the payment arrived in time. `undefined` when the payment is recorded
 * already (nothing changes).
 */
export function recordPayment(
  years: readonly PaidYear[] | undefined,
  schedule: { anchor: number; lastGranted: number },
  anchor: number,
  share: Pick<PaidShare, "payment" | "fromMonth" | "monthly">,
): RecordedPayment | undefined {
  if (shareOf(years, anchor, share.payment)) return undefined;
  const reached = monthReached(schedule, years, anchor);
  const added: PaidShare = { payment: share.payment, fromMonth: share.fromMonth, monthly: share.monthly, granted: 0, withheld: 0 };
  // the year that starts at this instant, or within the tolerance (the same year, seen through
  // another object's clock: an upgrade's anchor is the subscription's start, the annual invoice's
  // its line's); a year starting further away is another year, however close
  const existing = yearOf(years, anchor);
  let shares = [...(existing?.shares ?? []), added];
  let credits = 0;
  for (let month = share.fromMonth; month <= reached; month++) {
    const before = recordedAmount(shares, month);
    // the new payment pays its full monthly (a payment has no budget when it is recorded: a refund
    // that came first waits for it); every other share what it recorded for the month
    const outcome = evaluateMonth(shares, month, (paying) => (paying.payment === share.payment ? paying.monthly : valueAt(paying.byMonth, month)));
    shares = outcome.shares;
    credits += outcome.amount - before;
  }
  const monthsPassed = Math.max(0, reached - share.fromMonth + 1);
  const lastMonth = Math.max(existing?.lastMonth ?? 0, monthsPassed > 0 ? reached : 0);
  const year: PaidYear = { anchor: existing?.anchor ?? anchor, shares, ...(lastMonth > 0 ? { lastMonth } : {}) };
  const others = (years ?? []).filter((candidate) => candidate !== existing);
  const all = [...others, year].sort((a, b) => a.anchor - b.anchor);
  const newest = all.at(-1)?.anchor ?? anchor;
  return { years: all.filter((kept) => kept.anchor >= newest - KEEP_WINDOW_MS).slice(-PAID_YEARS_KEPT), monthsPassed, credits };
}

export interface MonthGrant {
  /** credits the month grants (what its shares paid for it, within budgets, less what credits take) */
  amount: number;
  /** what the budgets held back from this month, net of credits */
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
  const withinBudget = (share: PaidShare) => (share.budget === undefined ? share.monthly : Math.min(share.monthly, Math.max(0, share.budget)));
  const outcome = evaluateMonth(year.shares, month, withinBudget);
  const reached: PaidYear = { ...year, shares: outcome.shares, lastMonth: Math.max(year.lastMonth ?? 0, month) };
  return {
    amount: outcome.amount,
    withheld: outcome.withheld,
    years: (years ?? []).map((candidate) => (candidate === year ? reached : candidate)),
  };
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
