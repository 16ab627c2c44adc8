import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject } from "../helpers/stripe-events.js";
import { balanceOf, DAY, months, monthStart, PRO, portalSwitch, type Sub, YEAR } from "../helpers/annual.js";

/**
 * Red team round 6 (commit 169fdfd), RT6-1: a cancellation delivered before the (delayed) portal
 * switch that preceded it ends the annual year at the *cancellation*, not at the switch.
 * `annualYearLeft` (lib/billing/subscription.ts) returns `endedAt = next.lastEventAt` for any
 * ended `next`, without looking at the period the canceled subscription was on: the deletion's
 * own object says the subscription had left the annual year already (its price is the monthly
 * one, its `current_period_start` the switch instant, inside the year). The switch's
 * `customer.subscription.updated`, arriving afterwards, is older than the recorded state: stale,
 * so nothing ever moves the end back to the switch.
 *
 * Sequence: pro annual (100,000 a month) from 1 January; months 1..3 granted; on 30 April 20:00
 * UTC the user switches to pro monthly in the portal (Stripe credits the unused year and bills a
 * monthly period from then, invoice paid: 100,000); on 2 May 10:00 the subscription is canceled
 * at once.
 *  - delivered on time: the year ends after month 3 (the switch); 10,000 + 4 × 100,000 (months
 *    0..3) + 100,000 (the monthly invoice) = 510,000.
 *  - the switch's update retried by Stripe until 3 May (the sweep granted month 4 from the year
 *    on 1 May 13:00; the deletion delivered on time on 2 May): the deletion ends the year after
 *    month 4 (the month in progress on 2 May), month 4 stays; the update is stale: 610,000.
 * Expected by arithmetic: 510,000 in both orders (the year was left at the switch, 30 April).
 * Variant b: the same with a portal switch to another annual period (new anchor on 30 April) instead
 * of monthly: the old year must end after month 3, whatever order the deletion comes in.
 */
captureLogs();
const fx = useBillingFixture();

const SWITCH_AT = monthStart(4) - 16 * 3_600; // 30 April 20:00 UTC: month 3 of the year
const CANCELED_AT = monthStart(4) + 22 * 3_600; // 2 May 10:00 UTC: month 4 of the old year

async function run(kind: "monthly" | "annual", updateLate: boolean) {
  const sub: Sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 49_000 });
  expect(await months(fx, sub.userId, 1, 3)).toEqual([PRO, PRO, PRO]);
  const newPrice = kind === "monthly" ? "price_pro_monthly" : "price_pro_yearly";
  const newEnd = kind === "monthly" ? SWITCH_AT + 31 * DAY : SWITCH_AT + YEAR;
  const sw = portalSwitch(sub, {
    at: SWITCH_AT,
    price: newPrice,
    periodEnd: newEnd,
    oldPrice: "price_pro_yearly",
    credit: 32_000,
    fullPrice: kind === "monthly" ? 4_900 : 49_000,
    creditPeriodEnd: T0 + YEAR,
  });
  fx.stripe.subscriptions.set(sub.subscriptionId, sw.switched);
  const canceled = subscriptionObject({
    id: sub.subscriptionId,
    customer: sub.customer,
    price: newPrice,
    userId: sub.userId,
    status: "canceled",
    periodStart: SWITCH_AT,
    periodEnd: newEnd,
  });
  const deleted = stripeEvent("customer.subscription.deleted", { created: CANCELED_AT, object: canceled });
  if (!updateLate) {
    fx.clock.value = (SWITCH_AT + 5) * 1000;
    expect((await fx.deliver(sw.updated)).status).toBe(200);
  }
  // the switch's invoice.paid arrives on time either way: the new period's 100,000
  fx.clock.value = (SWITCH_AT + 6) * 1000;
  expect((await fx.deliver(sw.paid)).json.outcome).toBe("allowance_granted");
  // the sweep on 1 May 13:00 (grants month 4 from the old year only while the switch is not applied)
  await months(fx, sub.userId, 4, 4);
  fx.stripe.subscriptions.set(sub.subscriptionId, canceled);
  fx.clock.value = (CANCELED_AT + 5) * 1000;
  expect((await fx.deliver(deleted)).status).toBe(200);
  if (updateLate) {
    fx.clock.value = (SWITCH_AT + 3 * DAY) * 1000;
    expect((await fx.deliver(sw.updated)).json.outcome).toBe("subscription_stale");
  }
  expect(await fx.deps.ledger.store.getAccount(sub.userId)).toMatchObject({ plan: "free" });
  expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  return balanceOf(fx, sub.userId);
}

describe("red team 6: a cancellation delivered before the portal switch that preceded it", () => {
  it("RT6-1a: annual → monthly, then canceled: the year ends at the switch in both orders", async () => {
    const onTime = await run("monthly", false);
    expect(onTime).toBe(10_000 + 4 * PRO + PRO); // 510,000
    expect(await run("monthly", true)).toBe(onTime); // observed: 610,000 (month 4 kept: the year ended at the cancellation)
  });

  it("RT6-1b: annual → another annual period, then canceled: the old year ends at the switch in both orders", async () => {
    const onTime = await run("annual", false);
    expect(onTime).toBe(10_000 + 4 * PRO + PRO); // months 0..3 of the old year, month 0 of the new one
    expect(await run("annual", true)).toBe(onTime);
  });
});
