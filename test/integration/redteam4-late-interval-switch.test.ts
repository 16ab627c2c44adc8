import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject } from "../helpers/stripe-events.js";
import { annualCancellation, balanceOf, DAY, months, monthStart, PRO, portalSwitch, type Sub, YEAR } from "../helpers/annual.js";

/**
 * Red team round 4 (commit faef294), RT4-1: an annual → monthly switch made in the Stripe portal
 * stops the annual schedule only when its `customer.subscription.updated` is applied. Whatever
 * the sweep (or a lazy authorize) grants meanwhile is granted from the annual year, although
 * Stripe ended that year at the switch and credited its unused time back in money. Unlike a
 * credited downgrade (a negative share settles the months it passed, RT2-4), nothing settles the
 * months an interval switch passed: the ledger depends on when the switch's events arrive.
 *
 * Sequence: pro annual (100,000 a month) from 1 January; months 1..3 granted; on 30 April 20:00
 * UTC the user switches to pro monthly in the portal (Stripe bills a monthly period from then and
 * credits the unused year). Month 4 of the year starts on 1 May 12:00.
 *  - delivered on time (5 s later): signup 10,000 + month 0 100,000 + months 1..3 300,000 + the
 *    monthly invoice 100,000 = 510,000; May is paid by the monthly invoice only.
 *  - delivered two days late (2 May; Stripe retries for 3 days), the sweep having run on 1 May:
 *    month 4 is granted from the annual year (+100,000) and stays: 610,000 observed.
 */
captureLogs();
const fx = useBillingFixture();

const AT = monthStart(4) - 16 * 3_600; // 30 April 20:00 UTC

function toMonthly(sub: Sub) {
  return portalSwitch(sub, {
    at: AT,
    price: "price_pro_monthly",
    periodEnd: AT + 31 * DAY,
    oldPrice: "price_pro_yearly",
    credit: 32_000, // the unused part of the year, back to the customer balance
    fullPrice: 4_900,
    creditPeriodEnd: T0 + YEAR,
  });
}

async function switchDeliveredAt(deliverAt: number, sweepBefore: boolean) {
  const sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 49_000 });
  expect(await months(fx, sub.userId, 1, 3)).toEqual([PRO, PRO, PRO]);
  const sw = toMonthly(sub);
  fx.stripe.subscriptions.set(sub.subscriptionId, sw.switched); // Stripe has switched at AT
  if (sweepBefore) await months(fx, sub.userId, 4, 4); // the sweep on 1 May, before the switch's events arrive
  fx.clock.value = deliverAt * 1000;
  expect((await fx.deliver(sw.updated)).status).toBe(200);
  expect((await fx.deliver(sw.paid)).json.outcome).toBe("allowance_granted"); // the monthly period's 100,000
  expect(await fx.deps.ledger.store.getAccount(sub.userId)).toMatchObject({ plan: "pro", interval: "month" });
  await months(fx, sub.userId, 5, 6); // nothing more is scheduled on a monthly plan
  expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  return balanceOf(fx, sub.userId);
}

describe("red team 4: an annual → monthly switch delivered after a month boundary", () => {
  it("RT4-1: the months after the switch are not granted from the annual year, whenever the switch's events arrive", async () => {
    const onTime = await switchDeliveredAt(AT + 5, false);
    expect(onTime).toBe(10_000 + PRO + 3 * PRO + PRO); // 510,000
    const late = await switchDeliveredAt(monthStart(4) + 2 * DAY, true);
    expect(late).toBe(onTime); // observed on faef294: 610,000 (month 4 granted from the year Stripe ended)
  });
});

/**
 * The class of RT4-1: any event that ends an annual year early and arrives after a month boundary.
 * An immediate cancellation (customer.subscription.deleted) on 30 April 20:00 delivered on 2 May,
 * after the sweep granted month 4 from the year Stripe had ended: month 4 is taken back
 * (`year-end#…`), so the ledger is the one an on-time delivery leaves.
 */
describe("red team 4: an annual year canceled before a month boundary, its deletion delivered after it", () => {
  async function canceledDeliveredAt(deliverAt: number, sweepBefore: boolean) {
    const sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 49_000 });
    expect(await months(fx, sub.userId, 1, 3)).toEqual([PRO, PRO, PRO]);
    if (sweepBefore) expect(await months(fx, sub.userId, 4, 4)).toEqual([PRO]); // granted from the year Stripe ended
    await annualCancellation(fx, sub, AT).deliver(deliverAt);
    expect(await fx.deps.ledger.store.getAccount(sub.userId)).toMatchObject({ plan: "free" });
    expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
    return balanceOf(fx, sub.userId);
  }

  it("the months after the cancellation are taken back when the sweep granted them first", async () => {
    const onTime = await canceledDeliveredAt(AT + 5, false);
    expect(onTime).toBe(10_000 + PRO + 3 * PRO);
    expect(await canceledDeliveredAt(monthStart(4) + 2 * DAY, true)).toBe(onTime); // fails without year-end: +100,000
  });
});
