import { describe, expect, it } from "vitest";
import { auditAccount, grantAllowanceIfDue } from "../../lib/ledger/index.js";
import { yearOf } from "../../lib/ledger/paid-year.js";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject } from "../helpers/stripe-events.js";
import { balanceOf, DAY, monthlyToAnnual, months, monthStart, portalSwitch, PRO, type Sub, YEAR } from "../helpers/annual.js";

/**
 * Red team round 7 (commit dd28f88), RT7-1: a portal switch to another annual period seen only in
 * a later cancellation loses the months the *new* year granted before the cancellation.
 *
 * `annualYearLeft` (lib/billing/subscription.ts) returns both years the cancellation's state ends:
 * the old year at the switch, and the new year (the canceled object's annual period) at the
 * cancellation. `endAnnualYear` (lib/ledger/year-end.ts) grants "the month in progress if the
 * sweep had not reached it" through `grantAllowanceIfDue`, i.e. the account's *current schedule* —
 * which is still the old year (the switch's update never re-anchored it). Nothing grants the new
 * year's months 1..e: `endYear` records the new year ended with `lastMonth` 0, and the schedule
 * never visits that year. The docs' rule (the year grants months 0..e, e the month in progress at
 * the end) holds only when the switch's update came first.
 *
 * Sequence: pro annual (100,000 a month) from 1 January; months 1..3 granted; on 30 April 20:00
 * UTC the user switches to a new pro annual period in the portal (its invoice paid on time:
 * month 0 of the new year + its share); the sweep runs on every month boundary of either year; on
 * 2 July 10:00 (month 2 of the new year: 30 June 20:00 → 30 July 20:00) the subscription is
 * canceled at once.
 *  - on time (the switch's update delivered at 30 April 20:00:05): old year months 0..3, new year
 *    months 0..2: 10,000 + 7 × 100,000 = 710,000.
 *  - the switch's update retried by Stripe and delivered after the deletion (3 July): the old
 *    year's months 4..6 are granted by the sweep then undone by the end (fine), but the new year's
 *    months 1 and 2 are never granted: 510,000 observed.
 * Expected by arithmetic: 710,000 in both orders.
 *
 * Variant b: the same from a pro *monthly* subscription (from 1 January, its invoice 100,000)
 * switched to pro annual in the portal on 20 January 20:00 (annual invoice paid on time: month 0),
 * canceled on 22 March 10:00 (month 2 of the year: 20 March 20:00 → 20 April 20:00). The monthly
 * account has no schedule at all, so nothing ever grants the year's months 1..2 when the switch's
 * update comes after the deletion.
 *  - on time: 10,000 + 100,000 (January) + 3 × 100,000 (months 0..2) = 410,000.
 *  - update after the deletion: 210,000 observed.
 */
captureLogs();
const fx = useBillingFixture();

const SWITCH_AT = monthStart(4) - 16 * 3_600; // 30 April 20:00 UTC: month 3 of the first year
const CANCELED_AT = monthStart(6) + 22 * 3_600; // 2 July 10:00 UTC: month 2 of the new year (from 30 June 20:00)

/** The sweep, run an hour after every month boundary of either year up to the cancellation. */
const SWEEP_TIMES = [
  monthStart(4) + 3_600, // 1 May 13:00 (old year month 4)
  SWITCH_AT + 30 * DAY + 3_600, // 30 May 21:00 (new year month 1)
  monthStart(5) + 3_600, // 1 June 13:00 (old year month 5)
  SWITCH_AT + 61 * DAY + 3_600, // 30 June 21:00 (new year month 2)
  monthStart(6) + 3_600, // 1 July 13:00 (old year month 6)
];

async function run(updateLate: boolean) {
  const sub: Sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 49_000 });
  expect(await months(fx, sub.userId, 1, 3)).toEqual([PRO, PRO, PRO]);
  const sw = portalSwitch(sub, {
    at: SWITCH_AT,
    price: "price_pro_yearly",
    periodEnd: SWITCH_AT + YEAR,
    oldPrice: "price_pro_yearly",
    credit: 32_000,
    fullPrice: 49_000,
    creditPeriodEnd: T0 + YEAR,
  });
  fx.stripe.subscriptions.set(sub.subscriptionId, sw.switched);
  if (!updateLate) {
    fx.clock.value = (SWITCH_AT + 5) * 1000;
    expect((await fx.deliver(sw.updated)).status).toBe(200);
  }
  fx.clock.value = (SWITCH_AT + 6) * 1000;
  expect((await fx.deliver(sw.paid)).json.outcome).toBe("allowance_granted");
  for (const at of SWEEP_TIMES) {
    fx.clock.value = at * 1000;
    await grantAllowanceIfDue(fx.deps.ledger, sub.userId);
  }
  const canceled = subscriptionObject({
    id: sub.subscriptionId,
    customer: sub.customer,
    price: "price_pro_yearly",
    userId: sub.userId,
    status: "canceled",
    periodStart: SWITCH_AT,
    periodEnd: SWITCH_AT + YEAR,
  });
  fx.stripe.subscriptions.set(sub.subscriptionId, canceled);
  fx.clock.value = (CANCELED_AT + 5) * 1000;
  expect((await fx.deliver(stripeEvent("customer.subscription.deleted", { created: CANCELED_AT, object: canceled }))).status).toBe(200);
  if (updateLate) {
    fx.clock.value = (CANCELED_AT + DAY) * 1000;
    expect((await fx.deliver(sw.updated)).json.outcome).toBe("subscription_stale");
  }
  const account = await fx.deps.ledger.store.getAccount(sub.userId);
  expect(account).toMatchObject({ plan: "free" });
  expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  return {
    balance: await balanceOf(fx, sub.userId),
    oldYearEnd: yearOf(account?.paidYears, T0 * 1000)?.endedAfter,
    newYearEnd: yearOf(account?.paidYears, SWITCH_AT * 1000)?.endedAfter,
  };
}

describe("red team 7: a switch to another annual period seen only in a cancellation months later", () => {
  it("RT7-1: the new year's months 1..e are granted whether the switch's update comes before or after the deletion", async () => {
    const onTime = await run(false);
    expect(onTime).toEqual({ balance: 10_000 + 4 * PRO + 3 * PRO, oldYearEnd: 3, newYearEnd: 2 });
    expect(await run(true)).toEqual(onTime); // observed: balance 510,000 (new year's months 1, 2 never granted)
  });
});

const M_SWITCH_AT = T0 + 19 * DAY + 8 * 3_600; // 20 January 20:00 UTC
const M_CANCELED_AT = monthStart(2) + 20 * DAY + 22 * 3_600; // 22 March 10:00 UTC: month 2 of the year

async function runFromMonthly(updateLate: boolean) {
  const sub: Sub = await subscribeAndPay(fx, { plan: "pro", interval: "month", amountPaid: 4_900 });
  const sw = monthlyToAnnual(sub, M_SWITCH_AT, T0, 1_800);
  fx.stripe.subscriptions.set(sub.subscriptionId, sw.switched);
  if (!updateLate) {
    fx.clock.value = (M_SWITCH_AT + 5) * 1000;
    expect((await fx.deliver(sw.updated)).status).toBe(200);
  }
  fx.clock.value = (M_SWITCH_AT + 6) * 1000;
  expect((await fx.deliver(sw.paid)).json.outcome).toBe("allowance_granted");
  // the sweep an hour after each of the year's month boundaries (20 February, 20 March 21:00)
  expect(await months(fx, sub.userId, 1, 2, M_SWITCH_AT)).toEqual(updateLate ? [0, 0] : [PRO, PRO]);
  const canceled = subscriptionObject({
    id: sub.subscriptionId,
    customer: sub.customer,
    price: "price_pro_yearly",
    userId: sub.userId,
    status: "canceled",
    periodStart: M_SWITCH_AT,
    periodEnd: M_SWITCH_AT + YEAR,
  });
  fx.stripe.subscriptions.set(sub.subscriptionId, canceled);
  fx.clock.value = (M_CANCELED_AT + 5) * 1000;
  expect((await fx.deliver(stripeEvent("customer.subscription.deleted", { created: M_CANCELED_AT, object: canceled }))).status).toBe(200);
  if (updateLate) {
    fx.clock.value = (M_CANCELED_AT + DAY) * 1000;
    expect((await fx.deliver(sw.updated)).json.outcome).toBe("subscription_stale");
  }
  const account = await fx.deps.ledger.store.getAccount(sub.userId);
  expect(account).toMatchObject({ plan: "free" });
  expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  return { balance: await balanceOf(fx, sub.userId), yearEnd: yearOf(account?.paidYears, M_SWITCH_AT * 1000)?.endedAfter };
}

describe("red team 7: a switch from monthly to annual seen only in a cancellation months later", () => {
  it("RT7-1b: the year's months 1..e are granted whether the switch's update comes before or after the deletion", async () => {
    const onTime = await runFromMonthly(false);
    expect(onTime).toEqual({ balance: 10_000 + PRO + 3 * PRO, yearEnd: 2 });
    expect(await runFromMonthly(true)).toEqual(onTime); // observed: balance 210,000 (months 1, 2 never granted)
  });
});
