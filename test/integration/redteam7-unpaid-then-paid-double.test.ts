import { describe, expect, it } from "vitest";
import { auditAccount, grantAllowanceIfDue } from "../../lib/ledger/index.js";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";
import { balanceOf, DAY, months, PRO, renewalPaid, type Sub, YEAR } from "../helpers/annual.js";

/**
 * Red team round 7 (commit dd28f88), RT7-2: a past-due annual renewal that goes `unpaid` and is
 * then paid grants the months passed over while past due twice.
 *
 * While the renewal is past due the account is on the new year's schedule (past_due is live) and
 * the schedule passes its months over, recording `lastMonth` on the year (withMonthPassedOver,
 * lib/ledger/paid-year.ts, the RT5-5 fix). `unpaid` is not live: `reconcilePlan` moves the
 * account to free. When the renewal is then paid, `recordPayment` settles the months passed over
 * (`invoice#<in>#months`, up to `lastMonth`); when the subscription becomes active again,
 * `scheduleFor` (lib/ledger/plan-schedule.ts) sees a free account going annual — "a new annual
 * period" — and resets the schedule to `periodIndex` 0, so the sweep grants the same months again
 * under their `allowance#…` keys (monthGrant does not look at what the year settled already).
 *
 * Sequence: pro annual (100,000 a month) from 1 January 2026, months 1..11 granted; the renewal
 * on 1 January 2027 fails (past_due); the sweep passes month 1 over on 1 February 13:00; Stripe
 * marks the subscription unpaid on 10 February; the customer pays the renewal on 15 February
 * (the subscription active again the same second); the sweep runs on 1 March 13:00.
 *  - the same facts without the unpaid detour (paid while past due): 10,000 + 12 × 100,000 +
 *    3 × 100,000 (months 0..2 of 2027) = 1,510,000.
 *  - with it: month 1 is settled by the payment and granted again by the re-anchored schedule:
 *    1,610,000 observed.
 * Expected by arithmetic: 1,510,000 (the year 2027 was paid once: months 0..2 by 1 March).
 */
captureLogs();
const fx = useBillingFixture();
const Y2 = T0 + YEAR; // 1 January 2027 12:00
const UNPAID_AT = Y2 + 40 * DAY; // 10 February 2027
const PAID_AT = Y2 + 45 * DAY; // 15 February 2027

async function run(unpaidDetour: boolean) {
  const sub: Sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 120_000 });
  expect(await months(fx, sub.userId, 1, 11)).toEqual(Array(11).fill(PRO));
  const obj = (status: string) =>
    subscriptionObject({ id: sub.subscriptionId, customer: sub.customer, price: "price_pro_yearly", userId: sub.userId, status, periodStart: Y2, periodEnd: Y2 + YEAR });
  fx.clock.value = (Y2 + 5) * 1000;
  expect((await fx.deliver(stripeEvent("customer.subscription.updated", { created: Y2, object: obj("past_due") }))).status).toBe(200);
  expect(await months(fx, sub.userId, 1, 1, Y2)).toEqual([0]); // passed over: nobody paid for 2027 yet
  if (unpaidDetour) {
    fx.clock.value = (UNPAID_AT + 5) * 1000;
    expect((await fx.deliver(stripeEvent("customer.subscription.updated", { created: UNPAID_AT, object: obj("unpaid") }))).status).toBe(200);
  }
  fx.clock.value = PAID_AT * 1000;
  const renewal = renewalPaid(sub, { invoiceId: uniqueStripeId("in"), start: Y2, amountPaid: 120_000, created: PAID_AT });
  expect((await fx.deliver(renewal)).json.outcome).toBe("allowance_granted");
  fx.stripe.subscriptions.set(sub.subscriptionId, obj("active"));
  expect((await fx.deliver(stripeEvent("customer.subscription.updated", { created: PAID_AT, object: obj("active") }))).status).toBe(200);
  // the sweep on 1 March 13:00 (back-fills whatever the schedule owes)
  fx.clock.value = (Date.UTC(2027, 2, 1, 13) as number);
  await grantAllowanceIfDue(fx.deps.ledger, sub.userId);
  expect(await fx.deps.ledger.store.getAccount(sub.userId)).toMatchObject({ plan: "pro", interval: "year", periodAnchor: Y2 * 1000 });
  expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  return balanceOf(fx, sub.userId);
}

describe("red team 7: a past-due annual renewal that went unpaid, then paid", () => {
  it("RT7-2: the months passed over while past due are granted once", async () => {
    const paidWhilePastDue = await run(false);
    expect(paidWhilePastDue).toBe(10_000 + 12 * PRO + 3 * PRO);
    expect(await run(true)).toBe(paidWhilePastDue); // observed: 1,610,000 (month 1 settled by the payment and granted again)
  });
});
