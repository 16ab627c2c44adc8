import { createHash } from "node:crypto";
import { type Catalog, planOf } from "../catalog.js";
import { type Cadence, periodIndexAt, periodStart } from "../periods.js";
import type { AccountRecord } from "./account.js";
import { LAST_SCHEDULED_ANNUAL_MONTH } from "./paid-year.js";
import { SCHEDULE_SHARDS } from "./table-definition.js";

export function freeCadence(catalog: Catalog): Cadence {
  return { kind: "days", days: catalog.freePeriodDays };
}

/** Which allowances a schedule grants: free plans every 30 days, annual plans every month. */
export function scheduledCadence(
  account: Pick<AccountRecord, "plan" | "interval">,
  catalog: Catalog,
): Cadence | undefined {
  if (!planOf(account.plan, catalog).paid) return freeCadence(catalog);
  if (account.interval === "year") return { kind: "calendarMonth" };
  return undefined; // monthly paid plans are granted by their paid invoices
}

export function shardOf(userId: string): string {
  const digest = createHash("sha256").update(userId).digest();
  return `G${(digest[0] as number) % SCHEDULE_SHARDS}`;
}

export { LAST_SCHEDULED_ANNUAL_MONTH };

function lastIndex(cadence: Cadence): number {
  return cadence.kind === "calendarMonth" ? LAST_SCHEDULED_ANNUAL_MONTH : Number.POSITIVE_INFINITY;
}

export interface DueAllowance {
  index: number;
  start: number;
  /** the grant after this one; undefined when the schedule ends with this grant (annual month 11) */
  nextGrantAt: number | undefined;
  /** idempotency key: the period's start instant, unique across plans and anchors */
  key: string;
}

/**
 * The allowance period due at `now`, if any. A free plan's missed periods are not back-filled: a
 * user who was away for six periods gets the current period's allowance once (as the original
 * product did). An annual year's months were paid for, every one: the oldest month not granted yet
 * is due first (a sweep outage that spans a whole month must not lose it), and the next one is
 * due right after it.
 */
export function dueAllowance(account: AccountRecord, now: number, catalog: Catalog): DueAllowance | undefined {
  const cadence = scheduledCadence(account, catalog);
  if (!cadence || account.nextGrantAt === undefined || account.nextGrantAt > now) return undefined;
  const last = lastIndex(cadence);
  const current = Math.min(periodIndexAt(account.periodAnchor, now, cadence), last);
  const index = cadence.kind === "calendarMonth" ? Math.min(current, account.periodIndex + 1) : current;
  if (index <= account.periodIndex) return undefined;
  const start = periodStart(account.periodAnchor, index, cadence);
  return {
    index,
    start,
    nextGrantAt: index < last ? periodStart(account.periodAnchor, index + 1, cadence) : undefined,
    key: `allowance#${new Date(start).toISOString()}`,
  };
}

/**
 * The next scheduled grant after the one last granted, or undefined when there is none (monthly
 * paid plans; an annual year whose months are all granted). Used to repair a `nextGrantAt` left in
 * the past with nothing due, which would otherwise make every authorize look for a grant.
 */
export function expectedNextGrantAt(account: AccountRecord, catalog: Catalog): number | undefined {
  const cadence = scheduledCadence(account, catalog);
  if (!cadence || account.periodIndex >= lastIndex(cadence)) return undefined;
  return periodStart(account.periodAnchor, account.periodIndex + 1, cadence);
}
