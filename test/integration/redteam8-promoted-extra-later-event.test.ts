import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { yearOf } from "../../lib/ledger/paid-year.js";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";
import { balanceOf, DAY, months, monthStart, PRO, type Sub, YEAR } from "../helpers/annual.js";

/**
 * Red team round 8 (commit 9c55f5f), RT8-1: the RT5-4 fix (a canceled annual subscription whose
 * place is taken by a promoted extra subscription ends its year at its cancellation, not at the
 * extra's period start) is undone by the *next* event of the promoted subscription.
 *
 * `annualYearLeft` (lib/billing/subscription.ts) now ends, for any state of the current
 * subscription, every paid year of the account that the state's period starts strictly inside of
 * (`yearsLeftBy`, lib/ledger/paid-year.ts). After the promotion the current subscription is B,
 * whose period started *inside A's year* (B was a second live subscription all along), so any
 * later event of B — the user turning on cancel_at_period_end in the portal, a metadata update,
 * a redelivery of B's own earlier event — ends A's year at B's period start: `endAnnualYear`
 * undoes A's months after it (`year-end#…`, reason refund), months A paid for and ran through.
 * `yearsLeftBy` does not ask whether the year belongs to the subscription whose state it reads.
 *
 * Sequence: pro annual A (100,000 a month) from 1 January; a second live subscription B of the
 * user (recorded extra); months 1..5 of A granted; A canceled at once on 3 June (month 5 in
 * progress): B promoted (RT5-4 reference: 610,000). Then, 10 June, B's customer.subscription.updated
 * (cancel_at_period_end set in the portal, same period).
 *  - B plus annual from 20 January: A's year ends after month 0: months 1..5 (500,000) taken back.
 *  - B plus monthly from 20 May: A's year ends after month 4: month 5 (100,000) taken back.
 * Expected by arithmetic: 10,000 + 6 × 100,000 = 610,000 before and after B's update (B's own
 * invoices are not delivered here: B's year has nothing paid and grants nothing).
 */
captureLogs();
const fx = useBillingFixture();

const CANCELED_AT = monthStart(5) + 2 * DAY; // 3 June 12:00: month 5 of A in progress
const B_UPDATED_AT = monthStart(5) + 9 * DAY; // 10 June 12:00

async function run(extra: { price: string; start: number; end: number }) {
  const a: Sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 120_000 });
  const bId = uniqueStripeId("sub");
  const b = (cancelAtPeriodEnd: boolean) =>
    subscriptionObject({
      id: bId,
      customer: a.customer,
      price: extra.price,
      userId: a.userId,
      periodStart: extra.start,
      periodEnd: extra.end,
      cancelAtPeriodEnd,
    });
  fx.clock.value = (extra.start + 5) * 1000;
  expect((await fx.deliver(stripeEvent("customer.subscription.updated", { created: extra.start, object: b(false) }))).json.outcome).toBe(
    "subscription_second_live_subscription",
  );
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
  expect(answer.json.outcome).toBe("subscription_promoted");
  const afterPromotion = await balanceOf(fx, a.userId);
  // B's next event: cancel_at_period_end set in the portal (same period)
  fx.stripe.subscriptions.set(bId, b(true));
  fx.clock.value = (B_UPDATED_AT + 5) * 1000;
  expect((await fx.deliver(stripeEvent("customer.subscription.updated", { created: B_UPDATED_AT, object: b(true) }))).status).toBe(200);
  const account = await fx.deps.ledger.store.getAccount(a.userId);
  expect((await auditAccount(fx.deps.ledger, a.userId)).problems).toEqual([]);
  return {
    afterPromotion,
    afterBUpdate: await balanceOf(fx, a.userId),
    aYearEnd: yearOf(account?.paidYears, T0 * 1000)?.endedAfter,
  };
}

describe("red team 8: a later event of a promoted extra subscription ends the canceled year at the extra's period start", () => {
  it("RT8-1a: promoted plus annual (from 20 January): A's months 1..5 stay", async () => {
    const start = T0 + 19 * DAY;
    expect(await run({ price: "price_plus_yearly", start, end: start + YEAR })).toEqual({
      afterPromotion: 10_000 + 6 * PRO,
      afterBUpdate: 10_000 + 6 * PRO, // observed: 110,000 (A's year ended after month 0)
      aYearEnd: 5,
    });
  });

  it("RT8-1b: promoted plus monthly (from 20 May): A's month 5 stays", async () => {
    const start = monthStart(4) + 19 * DAY;
    expect(await run({ price: "price_plus_monthly", start, end: start + 31 * DAY })).toEqual({
      afterPromotion: 10_000 + 6 * PRO,
      afterBUpdate: 10_000 + 6 * PRO, // observed: 510,000 (A's year ended after month 4)
      aYearEnd: 5,
    });
  });
});
