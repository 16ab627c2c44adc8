import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { yearOf } from "../../lib/ledger/paid-year.js";
import { invoicePaid, subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";
import { annualToMonthly, balanceOf, DAY, monthlyToAnnual, months, monthStart, PRO, type Sub, YEAR } from "../helpers/annual.js";

/**
 * Red team round 9 (commit 9c0b108), RT9-1: a switch's update retried after the subscription was
 * canceled *and another subscription became the account's current one* never ends the year it
 * left. The RT7-3 fix (`annualYearLeft` (a): any state, stale too, of the current subscription
 * whose period starts inside one of its own paid years ends that year there) runs only in the
 * `!current || current.id === next.id` branch of `applySubscription` (lib/billing/subscription.ts).
 * Once the user has subscribed again (or an extra subscription was promoted), the old
 * subscription is not the current one: its late event is answered `stale` in the "other
 * subscription" branch (it is older than its recorded end in `endedSubscriptions`) and
 * `endLeftYears` is never called, so the earliest end Stripe made is lost.
 *
 * Sequence (RT7-3 plus a cancellation and a new subscription, all within Stripe's retry window):
 * pro annual A (100,000 a month) from 1 January; months 1..3 granted; 30 April 20:00 (month 3) A
 * switched to pro monthly in the portal (invoice paid on time: 100,000; its
 * customer.subscription.updated retried by Stripe); 1 May 13:00 the sweep grants month 4 from the
 * year (the switch not applied yet); 2 May 10:00 A switched to pro annual again (new year, update
 * and invoice on time: month 0, 100,000: this ends the first year at 2 May, month 4); 2 May 11:00
 * A canceled at once (deletion on time); 2 May 12:00 the user subscribes again: N, pro monthly
 * (created + invoice.paid: 100,000). 3 May: the monthly switch's update finally arrives.
 * Balances below leave N's own invoice (100,000) aside.
 *  - without N (A still the current subscription when the late update arrives): the update ends
 *    the first year after month 3, month 4 is undone: 10,000 + 4 × 100,000 (months 0..3) +
 *    100,000 (monthly switch) + 100,000 (new year's month 0) = 610,000 — the RT7-3 result.
 *  - with N current: the late update is `stale` and ignored, the first year stays ended after
 *    month 4 and keeps month 4 (the year's time from 30 April was credited back by Stripe, and the
 *    monthly invoice paid that time again): 710,000 observed.
 * Expected by arithmetic: 610,000 both ways, the first year ended after month 3.
 */
captureLogs();
const fx = useBillingFixture();

const MONTHLY_AT = monthStart(4) - 16 * 3_600; // 30 April 20:00 UTC: month 3
const ANNUAL_AT = monthStart(4) + 22 * 3_600; // 2 May 10:00 UTC: month 4 of the first year
const CANCELED_AT = ANNUAL_AT + 3_600; // 2 May 11:00
const RESUBSCRIBED_AT = ANNUAL_AT + 2 * 3_600; // 2 May 12:00

async function run(resubscribe: boolean) {
  const sub: Sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 49_000 });
  expect(await months(fx, sub.userId, 1, 3)).toEqual([PRO, PRO, PRO]);
  const toMonthly = annualToMonthly(sub, MONTHLY_AT);
  const toAnnual = monthlyToAnnual(sub, ANNUAL_AT, MONTHLY_AT);
  // the monthly switch's update is retried by Stripe; its invoice.paid arrives on time
  fx.clock.value = (MONTHLY_AT + 6) * 1000;
  expect((await fx.deliver(toMonthly.paid)).json.outcome).toBe("allowance_granted");
  expect(await months(fx, sub.userId, 4, 4)).toEqual([PRO]); // the sweep, 1 May 13:00
  fx.stripe.subscriptions.set(sub.subscriptionId, toAnnual.switched);
  fx.clock.value = (ANNUAL_AT + 5) * 1000;
  expect((await fx.deliver(toAnnual.updated)).status).toBe(200);
  expect((await fx.deliver(toAnnual.paid)).json.outcome).toBe("allowance_granted");
  // A canceled at once (on the new annual period)
  const canceled = subscriptionObject({
    id: sub.subscriptionId,
    customer: sub.customer,
    price: "price_pro_yearly",
    userId: sub.userId,
    status: "canceled",
    periodStart: ANNUAL_AT,
    periodEnd: ANNUAL_AT + YEAR,
  });
  fx.stripe.subscriptions.set(sub.subscriptionId, canceled);
  fx.clock.value = (CANCELED_AT + 5) * 1000;
  expect((await fx.deliver(stripeEvent("customer.subscription.deleted", { created: CANCELED_AT, object: canceled }))).status).toBe(200);
  if (resubscribe) {
    // a new subscription N (pro monthly): subscribe lets it start once A is canceled
    const nId = uniqueStripeId("sub");
    const nInvoice = uniqueStripeId("in");
    const n = subscriptionObject({
      id: nId,
      customer: sub.customer,
      price: "price_pro_monthly",
      userId: sub.userId,
      periodStart: RESUBSCRIBED_AT,
      periodEnd: RESUBSCRIBED_AT + 31 * DAY,
      latestInvoice: nInvoice,
    });
    fx.stripe.subscriptions.set(nId, n);
    fx.clock.value = (RESUBSCRIBED_AT + 5) * 1000;
    expect((await fx.deliver(stripeEvent("customer.subscription.created", { created: RESUBSCRIBED_AT, object: n }))).json.outcome).toBe(
      "subscription_replaced",
    );
    const paid = invoicePaid({
      invoiceId: nInvoice,
      customer: sub.customer,
      subscriptionId: nId,
      userId: sub.userId,
      price: "price_pro_monthly",
      amountPaid: 4_900,
      created: RESUBSCRIBED_AT + 1,
      linePeriod: { start: RESUBSCRIBED_AT, end: RESUBSCRIBED_AT + 31 * DAY },
    });
    expect((await fx.deliver(paid)).json.outcome).toBe("allowance_granted");
  }
  // 3 May: the monthly switch's update, retried by Stripe, finally arrives
  fx.clock.value = (ANNUAL_AT + DAY) * 1000;
  expect((await fx.deliver(toMonthly.updated)).json.outcome).toBe("subscription_stale");
  const account = await fx.deps.ledger.store.getAccount(sub.userId);
  expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  return {
    balance: (await balanceOf(fx, sub.userId)) - (resubscribe ? PRO : 0), // N's own invoice set aside
    firstYearEnd: yearOf(account?.paidYears, T0 * 1000)?.endedAfter,
  };
}

describe("red team 9: a switch's late update after the subscription was replaced by a new one", () => {
  it("RT9-1: the first year ends at the monthly switch whether or not the user subscribed again meanwhile", async () => {
    const alone = await run(false);
    expect(alone).toEqual({ balance: 10_000 + 4 * PRO + PRO + PRO, firstYearEnd: 3 });
    expect(await run(true)).toEqual(alone); // observed: { balance: 710,000, firstYearEnd: 4 }
  });
});
