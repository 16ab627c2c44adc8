import { createHash } from "node:crypto";
import { type Catalog, planOf } from "../catalog.js";
import { type Cadence, periodIndexAt, periodStart } from "../periods.js";
import type { AccountRecord } from "./account.js";
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

export interface DueAllowance {
  index: number;
  start: number;
  nextGrantAt: number;
  /** idempotency key: the period's start instant, unique across plans and anchors */
  key: string;
}

/**
 * The allowance period due at `now`, if any. Missed periods are not back-filled: a user who was
 * away for six periods gets the current period's allowance once (as the original product did).
 */
export function dueAllowance(account: AccountRecord, now: number, catalog: Catalog): DueAllowance | undefined {
  const cadence = scheduledCadence(account, catalog);
  if (!cadence || account.nextGrantAt === undefined || account.nextGrantAt > now) return undefined;
  const index = periodIndexAt(account.periodAnchor, now, cadence);
  if (index <= account.periodIndex) return undefined;
  const start = periodStart(account.periodAnchor, index, cadence);
  return {
    index,
    start,
    nextGrantAt: periodStart(account.periodAnchor, index + 1, cadence),
    key: `allowance#${new Date(start).toISOString()}`,
  };
}
