import { extraAnnualSubscription } from "../helpers/annual.js";
import { describe, expect, it } from "vitest";
import { auditAccount, grantAllowanceIfDue } from "../../lib/ledger/index.js";
import { yearOf } from "../../lib/ledger/paid-year.js";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject, } from "../helpers/stripe-events.js";
import { balanceOf, DAY, months, monthStart, PLUS, PRO, type Sub, YEAR } from "../helpers/annual.js";

/**
 * Red team round 9 (commit 9c0b108), RT9-2: two annual subscriptions of one user whose years start
 * within `ANCHOR_TOLERANCE_MS` (5 s) are recorded as ONE paid year, which belongs to whichever
 * subscription's annual invoice came first (`recordPayment` keeps `existing.subscription`). The
 * RT8 fix makes `yearsLeftBy` ask whose year it is, but the year is both subscriptions' and only
 * one name fits; and rule (c) of `annualYearLeft` (a cancellation ends `next.periodStart`'s year)
 * finds the year through the tolerance, whoever it belongs to. So canceling one subscription ends
 * the other's paid year too.
 *
 * Sequence: pro annual A (100,000 a month) from 1 January 12:00:00 (current); a second live
 * subscription B, plus annual (40,000 a month), from `T0 + offset` (recorded extra), its annual
 * invoice paid on time (month 0: 40,000 + its share of months 1..11); the sweep grants months 1..5;
 * on 3 June 12:00 (month 5) A is canceled at once: B is promoted; the sweep then runs to the end of
 * B's year.
 *  - B from 12:00:06 (another year): A's months 0..5 (600,000), B's months 0..11 (480,000):
 *    10,000 + 1,080,000 = 1,090,000.
 *  - B from 12:00:03 (merged into A's year, named A's): months 1..5 grant 140,000 each (both
 *    paid), then A's cancellation ends the merged year after month 5, and B — live, paid for the
 *    whole year — never gets months 6..11 (240,000): 850,000 observed.
 * Expected by arithmetic: 1,090,000 both ways (a payment is "recorded in the year starting within
 * 5 seconds of its anchor" is meant for one subscription's year seen through two objects' clocks,
 * not for another subscription's year).
 */
captureLogs();
const fx = useBillingFixture();

const CANCELED_AT = monthStart(5) + 2 * DAY; // 3 June 12:00: month 5 of A's year

async function run(offsetSeconds: number) {
  const a: Sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 49_000 });
  const bStart = T0 + offsetSeconds;
  const { paid } = await extraAnnualSubscription(fx, a, bStart);
  expect((await fx.deliver(paid)).json.outcome).toBe("allowance_granted");
  await months(fx, a.userId, 1, 5);
  const canceled = subscriptionObject({
    id: a.subscriptionId,
    customer: a.customer,
    price: "price_pro_yearly",
    userId: a.userId,
    status: "canceled",
    periodStart: T0,
    periodEnd: T0 + YEAR,
  });
  fx.stripe.subscriptions.set(a.subscriptionId, canceled);
  fx.clock.value = (CANCELED_AT + 5) * 1000;
  expect((await fx.deliver(stripeEvent("customer.subscription.deleted", { created: CANCELED_AT, object: canceled }))).json.outcome).toBe(
    "subscription_promoted",
  );
  // the sweep through the rest of B's year (back-fills B's months not granted yet, oldest first)
  await months(fx, a.userId, 6, 11, bStart);
  fx.clock.value = (bStart + YEAR - DAY) * 1000;
  await grantAllowanceIfDue(fx.deps.ledger, a.userId);
  const account = await fx.deps.ledger.store.getAccount(a.userId);
  expect(account).toMatchObject({ plan: "plus", interval: "year" });
  expect((await auditAccount(fx.deps.ledger, a.userId)).problems).toEqual([]);
  return {
    balance: await balanceOf(fx, a.userId),
    bYearEnd: yearOf(account?.paidYears, bStart * 1000)?.endedAfter,
  };
}

describe("red team 9: two annual subscriptions whose years start within 5 seconds", () => {
  it("RT9-2: canceling A does not end B's paid year, whether B started 6 s or 3 s after A", async () => {
    const apart = await run(6);
    expect(apart).toEqual({ balance: 10_000 + 6 * PRO + 12 * PLUS, bYearEnd: undefined });
    expect(await run(3)).toEqual(apart); // observed: { balance: 850,000, bYearEnd: 5 }
  });
});
