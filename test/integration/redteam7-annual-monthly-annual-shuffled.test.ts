import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { yearOf } from "../../lib/ledger/paid-year.js";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { annualToMonthly, balanceOf, DAY, monthlyToAnnual, months, monthStart, PRO, type Sub, } from "../helpers/annual.js";

/**
 * Red team round 7 (commit dd28f88), RT7-3: annual → monthly → annual in the portal, a few days
 * apart across a month boundary of the first year; when the second switch's update is delivered
 * before the first's, the first year ends at the *second* switch and keeps a month Stripe had
 * credited back.
 *
 * `annualYearLeft` (lib/billing/subscription.ts) ends the old year at `next.periodStart` — for the
 * annual → annual state it sees (the monthly step not applied yet) that is the second switch's
 * instant: the monthly period that really ended the year (its start, the first switch) is in no
 * state it is given. `endAnnualYear` then grants the month in progress at that later instant
 * first, and keeps it. The first switch's update, arriving afterwards, is stale. The RT6-1 fix
 * covers a switch seen in a later *cancellation* whose period is the switched one; a switch whose
 * period was replaced by another switch is not covered.
 *
 * Sequence: pro annual (100,000 a month) from 1 January; months 1..3 granted; on 30 April 20:00
 * UTC (month 3) the user switches to pro monthly in the portal (invoice paid: 100,000); on 2 May
 * 10:00 to pro annual again (a new year from then, invoice paid: month 0, 100,000). Both
 * invoice.paid events are delivered on time; the sweep runs on 1 May 13:00.
 *  - updates delivered on time: the first year ends after month 3: 10,000 + 4 × 100,000 +
 *    100,000 + 100,000 = 610,000.
 *  - the monthly update retried by Stripe and delivered on 3 May, after the annual one: the first
 *    year ends after month 4 (granted then, kept): 710,000 observed.
 * Expected by arithmetic: 610,000 in both orders (Stripe credited the first year's time from
 * 30 April 20:00 back: month 4 was not paid for).
 */
captureLogs();
const fx = useBillingFixture();

const MONTHLY_AT = monthStart(4) - 16 * 3_600; // 30 April 20:00 UTC: month 3
const ANNUAL_AT = monthStart(4) + 22 * 3_600; // 2 May 10:00 UTC: month 4 of the first year

async function run(monthlyLate: boolean) {
  const sub: Sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 49_000 });
  expect(await months(fx, sub.userId, 1, 3)).toEqual([PRO, PRO, PRO]);
  const toMonthly = annualToMonthly(sub, MONTHLY_AT);
  const toAnnual = monthlyToAnnual(sub, ANNUAL_AT, MONTHLY_AT);
  if (!monthlyLate) {
    fx.stripe.subscriptions.set(sub.subscriptionId, toMonthly.switched);
    fx.clock.value = (MONTHLY_AT + 5) * 1000;
    expect((await fx.deliver(toMonthly.updated)).status).toBe(200);
  }
  fx.clock.value = (MONTHLY_AT + 6) * 1000;
  expect((await fx.deliver(toMonthly.paid)).json.outcome).toBe("allowance_granted");
  await months(fx, sub.userId, 4, 4); // the sweep, 1 May 13:00
  fx.stripe.subscriptions.set(sub.subscriptionId, toAnnual.switched);
  fx.clock.value = (ANNUAL_AT + 5) * 1000;
  expect((await fx.deliver(toAnnual.updated)).status).toBe(200);
  expect((await fx.deliver(toAnnual.paid)).json.outcome).toBe("allowance_granted");
  if (monthlyLate) {
    fx.clock.value = (ANNUAL_AT + DAY) * 1000;
    expect((await fx.deliver(toMonthly.updated)).json.outcome).toBe("subscription_stale");
  }
  const account = await fx.deps.ledger.store.getAccount(sub.userId);
  expect(account).toMatchObject({ plan: "pro", interval: "year", periodAnchor: ANNUAL_AT * 1000 });
  expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  return { balance: await balanceOf(fx, sub.userId), firstYearEnd: yearOf(account?.paidYears, T0 * 1000)?.endedAfter };
}

describe("red team 7: annual → monthly → annual, the second switch's update delivered first", () => {
  it("RT7-3: the first year ends at the first switch in both orders", async () => {
    const onTime = await run(false);
    expect(onTime).toEqual({ balance: 10_000 + 4 * PRO + PRO + PRO, firstYearEnd: 3 });
    expect(await run(true)).toEqual(onTime); // observed: { balance: 710,000, firstYearEnd: 4 }
  });
});
