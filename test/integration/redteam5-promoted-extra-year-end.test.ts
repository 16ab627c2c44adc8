import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";
import { balanceOf, DAY, months, monthStart, PRO, type Sub, YEAR } from "../helpers/annual.js";

/**
 * Red team round 5 (commit 636d0cd), RT5-4: when a canceled annual subscription is replaced by a
 * live extra subscription of the same user ("promoted", lib/billing/subscription.ts), its year is
 * ended at the *promoted subscription's period start* instead of at the cancellation.
 * `annualYearEnded` (lib/ledger/plan-schedule.ts) takes a paid target's `periodStart` as the end
 * time, which is right for a portal switch (the new period starts at the switch) but not for a
 * promotion: the extra subscription's period started long before. Months of the canceled year
 * granted before its cancellation are taken back (`year-end#…`).
 *
 * Sequence: pro annual A (100,000 a month) from 1 January; the user also has a second live
 * subscription B (recorded as extra, reported); months 1..5 of A granted (month 5 on 1 June); A is
 * canceled at once on 3 June (month 5 in progress); B is promoted.
 *  - B plus monthly, its current period from 20 May: A ends after month 4: month 5 (100,000) is
 *    taken back: 510,000 observed.
 *  - B plus annual from 20 January: A ends after month 0: months 1..5 (500,000) are taken back:
 *    110,000 observed.
 * Expected by arithmetic (A ends after the month in progress at its cancellation, month 5; the same
 * cancellation without an extra subscription leaves exactly that): 10,000 + 600,000 = 610,000.
 */
captureLogs();
const fx = useBillingFixture();

const CANCELED_AT = monthStart(5) + 2 * DAY; // 3 June 12:00: month 5 of A in progress

async function run(extra: { price: string; start: number; end: number } | undefined) {
  const a: Sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 120_000 });
  if (extra) {
    const b = subscriptionObject({
      id: uniqueStripeId("sub"),
      customer: a.customer,
      price: extra.price,
      userId: a.userId,
      periodStart: extra.start,
      periodEnd: extra.end,
    });
    fx.clock.value = (extra.start + 5) * 1000;
    expect((await fx.deliver(stripeEvent("customer.subscription.updated", { created: extra.start, object: b }))).json.outcome).toBe(
      "subscription_second_live_subscription",
    );
  }
  expect(await months(fx, a.userId, 1, 5)).toEqual([PRO, PRO, PRO, PRO, PRO]);
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
  const answer = await fx.deliver(stripeEvent("customer.subscription.deleted", { created: CANCELED_AT, object: canceled }));
  expect(answer.json.outcome).toBe(extra ? "subscription_promoted" : "subscription_applied");
  expect((await auditAccount(fx.deps.ledger, a.userId)).problems).toEqual([]);
  return balanceOf(fx, a.userId);
}

describe("red team 5: an annual subscription canceled while another live subscription takes its place", () => {
  it("RT5-4 (reference): canceled with no other subscription, its year ends after month 5", async () => {
    expect(await run(undefined)).toBe(10_000 + 6 * PRO);
  });

  it("RT5-4a: a promoted monthly subscription does not end the year before the cancellation", async () => {
    const start = monthStart(4) + 19 * DAY; // 20 May
    expect(await run({ price: "price_plus_monthly", start, end: start + 31 * DAY })).toBe(10_000 + 6 * PRO); // observed: 510,000
  });

  it("RT5-4b: a promoted annual subscription does not end the year before the cancellation", async () => {
    const start = T0 + 19 * DAY; // 20 January
    expect(await run({ price: "price_plus_yearly", start, end: start + YEAR })).toBe(10_000 + 6 * PRO); // observed: 110,000
  });
});
