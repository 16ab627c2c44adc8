export const DAY_MS = 86_400_000;

/**
 * Allowance periods. Free accounts: fixed 30-day periods anchored at account creation, so a user
 * first seen on day 0 gets the next allowance on day 30 exactly. Annual plans: calendar months from
 * the subscription's period start (the anchor day each month, clamped to the month's last day),
 * so the twelve monthly grants line up with what the customer sees on their invoice.
 */
export type Cadence = { kind: "days"; days: number } | { kind: "calendarMonth" };

export function periodStart(anchor: number, index: number, cadence: Cadence): number {
  if (cadence.kind === "days") return anchor + index * cadence.days * DAY_MS;
  const base = new Date(anchor);
  const year = base.getUTCFullYear();
  const month = base.getUTCMonth() + index;
  const lastDay = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
  const day = Math.min(base.getUTCDate(), lastDay);
  return Date.UTC(year, month, day, base.getUTCHours(), base.getUTCMinutes(), base.getUTCSeconds(), base.getUTCMilliseconds());
}

/** The index of the period containing `now` (0 before the first boundary). */
export function periodIndexAt(anchor: number, now: number, cadence: Cadence): number {
  if (now < anchor) return 0;
  if (cadence.kind === "days") return Math.floor((now - anchor) / (cadence.days * DAY_MS));
  let index = Math.max(0, Math.floor((now - anchor) / (31 * DAY_MS)));
  while (periodStart(anchor, index + 1, cadence) <= now) index += 1;
  return index;
}
