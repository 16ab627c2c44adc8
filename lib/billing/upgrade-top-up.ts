import { type BillingInterval, type Catalog, isPlanId, type PlanId, planOf } from "../catalog.js";
import { LAST_SCHEDULED_ANNUAL_MONTH } from "../ledger/paid-year.js";
import { periodIndexAt, periodStart } from "../periods.js";

/**
 * The money rule of an upgrade's credit top-up, in one place (pure): the user pays Stripe's
 * proration, i.e. the price difference times the fraction of the period left at the proration
 * instant, so the credits follow the same fraction of the allowance difference. Used by
 * change-plan and by the proration invoice's `invoice.paid` backstop, which read the same terms
 * (from the subscription metadata change-plan writes) and so compute the same amount.
 */

export interface UpgradeTopUpInput {
  fromAllowance: number;
  toAllowance: number;
  /** the allowance period the top-up covers and the proration instant, all in one unit (callers use epoch seconds) */
  periodStart: number;
  periodEnd: number;
  at: number;
}

/**
 * floor(difference × (periodEnd − at) / (periodEnd − periodStart)): 0 when the difference is not
 * positive or the period is over, the full difference at (or before) its start. Floored, so we
 * never give more than was paid for; computed exactly (BigInt), whatever the unit.
 */
export function upgradeTopUp(input: UpgradeTopUpInput): number {
  for (const [name, value] of Object.entries(input)) {
    if (!Number.isSafeInteger(value)) throw new RangeError(`upgradeTopUp: ${name} must be a safe integer, got ${value}`);
  }
  const { fromAllowance, toAllowance, periodStart: start, periodEnd: end, at } = input;
  if (end <= start) throw new RangeError("upgradeTopUp: periodEnd must be after periodStart");
  const difference = toAllowance - fromAllowance;
  if (difference <= 0 || at >= end) return 0;
  const left = end - Math.max(at, start);
  return Number((BigInt(difference) * BigInt(left)) / BigInt(end - start));
}

/** Epoch seconds: Stripe's `proration_date` and period bounds are whole seconds. */
export interface SecondsPeriod {
  start: number;
  end: number;
}

/**
 * The proration instant to send Stripe as `proration_date` (whole seconds), kept inside the
 * subscription's current period: Stripe prorates from it, and so do we.
 */
export function prorationInstant(nowMs: number, subscription: SecondsPeriod): number {
  return Math.min(Math.max(Math.floor(nowMs / 1000), subscription.start), subscription.end);
}

/**
 * The allowance period an upgrade at `at` tops up. Monthly plans: the subscription's current
 * period (what Stripe prorates the price over). Annual plans: the allowance month in progress
 * (calendar months anchored at the subscription's period start, as the schedule grants them);
 * the later months of the year are paid by the upgrade's share (`upgradeShare`).
 */
export function allowancePeriodAt(interval: BillingInterval, subscription: SecondsPeriod, at: number): SecondsPeriod {
  if (interval === "month") return subscription;
  const cadence = { kind: "calendarMonth" } as const;
  const anchor = subscription.start * 1000;
  const index = periodIndexAt(anchor, at * 1000, cadence);
  return {
    start: Math.floor(periodStart(anchor, index, cadence) / 1000),
    end: Math.min(Math.floor(periodStart(anchor, index + 1, cadence) / 1000), subscription.end),
  };
}

/** What an upgrade was, as change-plan computed it: plans, interval, proration instant and allowance period (seconds). */
export interface UpgradeTerms {
  from: PlanId;
  to: PlanId;
  interval: BillingInterval;
  at: number;
  periodStart: number;
  periodEnd: number;
  /** annual plans: the paid year's start (the subscription's period start), seconds */
  yearStart?: number;
}

/** The credits an upgrade tops up (see `upgradeTopUp`). */
export function topUpOf(terms: UpgradeTerms, catalog: Catalog): number {
  return upgradeTopUp({
    fromAllowance: planOf(terms.from, catalog).monthlyAllowance,
    toAllowance: planOf(terms.to, catalog).monthlyAllowance,
    periodStart: terms.periodStart,
    periodEnd: terms.periodEnd,
    at: terms.at,
  });
}

/**
 * What an annual plan change does to the rest of its year (lib/ledger/paid-year.ts): the
 * allowance difference for every scheduled month after the one the change falls in (that month
 * is settled by the top-up, or the take back, for its time left). Positive for an upgrade's
 * payment, negative for a downgrade whose difference was credited back. Undefined when there is
 * no difference, or the change falls in the year's last month.
 */
export function planChangeShare(
  change: { from: PlanId; to: PlanId; at: number; yearStart: number },
  catalog: Catalog,
): { anchor: number; fromMonth: number; monthly: number } | undefined {
  const anchor = change.yearStart * 1000;
  const fromMonth = periodIndexAt(anchor, change.at * 1000, { kind: "calendarMonth" }) + 1;
  const monthly = planOf(change.to, catalog).monthlyAllowance - planOf(change.from, catalog).monthlyAllowance;
  return monthly !== 0 && fromMonth <= LAST_SCHEDULED_ANNUAL_MONTH ? { anchor, fromMonth, monthly } : undefined;
}

/** What an annual upgrade pays for the rest of its year (`planChangeShare`); undefined for a monthly plan. */
export function upgradeShare(terms: UpgradeTerms, catalog: Catalog): { anchor: number; fromMonth: number; monthly: number } | undefined {
  if (terms.interval !== "year" || terms.yearStart === undefined) return undefined;
  const share = planChangeShare({ ...terms, yearStart: terms.yearStart }, catalog);
  return share && share.monthly > 0 ? share : undefined;
}

/** The ledger key of an upgrade top-up: one per paid proration invoice (docs/invariants.md, invariant 3). */
export const upgradeKey = (invoiceId: string) => `upgrade#${invoiceId}`;

/**
 * The subscription metadata change-plan writes with the update (Stripe snapshots it on the
 * proration invoice, whose `invoice.paid` reads it back). Without terms (a downgrade) every key
 * is "", which Stripe treats as "remove this key".
 */
export function upgradeMetadata(terms: UpgradeTerms | undefined): Record<string, string> {
  return {
    upgradeFrom: terms ? terms.from : "",
    upgradeAt: terms ? String(terms.at) : "",
    upgradePeriodStart: terms ? String(terms.periodStart) : "",
    upgradePeriodEnd: terms ? String(terms.periodEnd) : "",
    upgradeYearStart: terms?.yearStart !== undefined ? String(terms.yearStart) : "",
  };
}

const SECONDS = /^\d{1,12}$/;

/**
 * Reads the upgrade terms back from an invoice's subscription metadata, strictly: known plan ids
 * and interval, digits only, and an instant inside a non-empty period. Anything else (including
 * metadata written before the terms carried the instant) is no upgrade we can price.
 */
export function readUpgradeMetadata(metadata: Record<string, string> | null | undefined): UpgradeTerms | undefined {
  const { upgradeFrom, plan, interval, upgradeAt, upgradePeriodStart, upgradePeriodEnd, upgradeYearStart } = metadata ?? {};
  if (!upgradeFrom || !plan || !isPlanId(upgradeFrom) || !isPlanId(plan)) return undefined;
  if (interval !== "month" && interval !== "year") return undefined;
  if (![upgradeAt, upgradePeriodStart, upgradePeriodEnd].every((value) => SECONDS.test(value ?? ""))) return undefined;
  const at = Number(upgradeAt);
  const start = Number(upgradePeriodStart);
  const end = Number(upgradePeriodEnd);
  if (!(start < end && start <= at && at <= end)) return undefined;
  if (interval === "month") return { from: upgradeFrom, to: plan, interval, at, periodStart: start, periodEnd: end };
  // an annual upgrade also pays the rest of its year, counted from the year's start
  if (!SECONDS.test(upgradeYearStart ?? "") || Number(upgradeYearStart) > start) return undefined;
  return { from: upgradeFrom, to: plan, interval, at, periodStart: start, periodEnd: end, yearStart: Number(upgradeYearStart) };
}

/** A plan change as a proration invoice prices it: from the credited price's plan to the charged one's. */
export interface ProratedPlanChange {
  from: PlanId;
  to: PlanId;
  interval: BillingInterval;
  /** the proration instant and the period's end, epoch seconds */
  at: number;
  periodEnd: number;
}

/**
 * The plan change a proration invoice bills, read from its lines (pure): a credited line (negative
 * amount) of one plan's price and a charged line (0 or more) of another plan's price of the same
 * interval, over the same rest of the period. What a switch made outside change-plan (the Stripe
 * portal) changed: the same rule then tops up and pays the rest of an annual year as ours does.
 * Undefined for anything else (a quantity change, a price that is no plan, lines without amounts).
 */
export function proratedPlanChange(
  lines: { price: string; amount: number | undefined; periodStart: number | undefined; periodEnd: number | undefined }[],
  planOfPrice: (price: string) => { plan: PlanId; interval: BillingInterval } | undefined,
): ProratedPlanChange | undefined {
  // the line of the price entered may be 0 (a coupon, a free plan price): only a credit tells which is left
  const credited = lines.filter((line) => line.amount !== undefined && line.amount < 0);
  const charged = lines.filter((line) => line.amount !== undefined && line.amount >= 0);
  if (credited.length !== 1 || charged.length !== 1) return undefined;
  const [left, entered] = [credited[0], charged[0]];
  const from = left && planOfPrice(left.price);
  const to = entered && planOfPrice(entered.price);
  const at = entered?.periodStart;
  const periodEnd = entered?.periodEnd;
  if (!from || !to || from.interval !== to.interval || from.plan === to.plan) return undefined;
  if (at === undefined || periodEnd === undefined || at >= periodEnd) return undefined;
  return { from: from.plan, to: to.plan, interval: to.interval, at, periodEnd };
}

/**
 * The start of the annual period ending at `periodEnd` (seconds): one calendar year before, as
 * Stripe bills years. A year anchored on 29 February ends on 28 February in other years, so an end
 * on 29 February started on the 28th of the year before (not 1 March, where the date would roll
 * over). An end on 28 February after a leap year may have started on the 29th; the 28th is taken,
 * the earlier, so a plan change on the first day is never outside the period.
 */
export function yearStartBefore(periodEnd: number): number {
  const end = new Date(periodEnd * 1000);
  const year = end.getUTCFullYear() - 1;
  const month = end.getUTCMonth();
  const lastDayOfMonth = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
  const start = Date.UTC(year, month, Math.min(end.getUTCDate(), lastDayOfMonth), end.getUTCHours(), end.getUTCMinutes(), end.getUTCSeconds(), end.getUTCMilliseconds());
  return Math.floor(start / 1000);
}
