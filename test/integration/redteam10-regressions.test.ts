import { describe, expect, it } from "vitest";
import { auditAccount, grantAllowanceIfDue } from "../../lib/ledger/index.js";
import { subscribeAndPay, subscriberInvoicePaid, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject } from "../helpers/stripe-events.js";
import {
  applySwitch,
  balanceOf,
  changePlanAt,
  DAY,
  months,
  monthStart,
  PLUS,
  PRO,
  portalSwitch,
  refundInvoice,
  renewalPaid,
  type Sub,
  YEAR,
} from "../helpers/annual.js";

/**
 * Red team round 10: plain flows and the brief's "after an end" sequences, each against the
 * documented rules by hand arithmetic (signup 10,000; plus 40,000, pro 100,000 a month).
 */
captureLogs();
const fx = useBillingFixture();

const audit = async (userId: string) => expect((await auditAccount(fx.deps.ledger, userId)).problems).toEqual([]);

function toMonthly(sub: Sub, at: number, oldPrice = "price_pro_yearly", price = "price_pro_monthly") {
  return portalSwitch(sub, { at, price, periodEnd: at + 31 * DAY, oldPrice, credit: 30_000, fullPrice: 4_900, creditPeriodEnd: T0 + YEAR });
}

describe("red team 10: regressions of normal flows", () => {
  it("a normal annual year grants months 0..11 once each, the renewal month 0 once, and the sweep nothing in between", async () => {
    const sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 49_000 });
    expect(await months(fx, sub.userId, 1, 11)).toEqual(Array(11).fill(PRO));
    // sweeps late in December and right at the renewal instant, before the renewal's events
    fx.clock.value = (T0 + YEAR - 3_600) * 1000;
    expect((await grantAllowanceIfDue(fx.deps.ledger, sub.userId)).granted).toBe(false);
    fx.clock.value = (T0 + YEAR + 60) * 1000;
    expect((await grantAllowanceIfDue(fx.deps.ledger, sub.userId)).granted).toBe(false);
    const renewed = subscriptionObject({
      id: sub.subscriptionId,
      customer: sub.customer,
      price: "price_pro_yearly",
      userId: sub.userId,
      periodStart: T0 + YEAR,
      periodEnd: T0 + 2 * YEAR,
    });
    fx.stripe.subscriptions.set(sub.subscriptionId, renewed);
    fx.clock.value = (T0 + YEAR + 120) * 1000;
    // the renewal's invoice before its update, then the update
    expect((await fx.deliver(renewalPaid(sub, { invoiceId: "in_rt10_renew", start: T0 + YEAR, amountPaid: 49_000, created: T0 + YEAR + 1 }))).json.outcome).toBe(
      "allowance_granted",
    );
    expect((await fx.deliver(stripeEvent("customer.subscription.updated", { created: T0 + YEAR, object: renewed }))).status).toBe(200);
    expect(await months(fx, sub.userId, 1, 11, T0 + YEAR)).toEqual(Array(11).fill(PRO));
    await audit(sub.userId);
    expect(await balanceOf(fx, sub.userId)).toBe(10_000 + 24 * PRO);
  });

  it("monthly pro: each paid cycle invoice once", async () => {
    const sub = await subscribeAndPay(fx, { plan: "pro", interval: "month", amountPaid: 4_900 });
    for (let m = 1; m <= 2; m++) {
      const start = T0 + m * 31 * DAY;
      const paid = subscriberInvoicePaid(sub, { price: "price_pro_monthly", billingReason: "subscription_cycle", amountPaid: 4_900, linePeriod: { start, end: start + 31 * DAY } });
      expect((await fx.deliver(paid)).json.outcome).toBe("allowance_granted");
      expect((await fx.deliver(paid)).status).toBe(200);
    }
    fx.clock.value = (T0 + 80 * DAY) * 1000;
    await grantAllowanceIfDue(fx.deps.ledger, sub.userId);
    await audit(sub.userId);
    expect(await balanceOf(fx, sub.userId)).toBe(10_000 + 3 * PRO);
  });
});

describe("red team 10: after an end", () => {
  const SWITCH_AT = monthStart(2) + 14 * DAY; // 15 March 12:00: month 2

  async function refundThenSwitch(refundFirst: boolean) {
    const sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 49_000 });
    const refund = () => refundInvoice(fx, sub.customer, sub.invoiceId, 49_000, 49_000, T0 + DAY);
    if (refundFirst) await refund();
    await months(fx, sub.userId, 1, 2);
    const sw = toMonthly(sub, SWITCH_AT);
    expect(await applySwitch(fx, sub, sw, SWITCH_AT)).toBe("allowance_granted");
    if (!refundFirst) await refund();
    await months(fx, sub.userId, 3, 5);
    await audit(sub.userId);
    return balanceOf(fx, sub.userId);
  }

  it("month-0 invoice refunded in full, then a switch to monthly (either order): the year nets nothing, the monthly invoice 100,000", async () => {
    // G = months 0..2 = 300,000, R = 1,200,000: 10,000 + G - min(R, G) + 100,000
    expect(await refundThenSwitch(true)).toBe(110_000);
    expect(await refundThenSwitch(false)).toBe(110_000);
  });

  const UP_AT = monthStart(3) + 15 * DAY; // 16 April 12:00: plus -> pro (April top-up 30,000, +60,000 a month from May)
  const END_AT = monthStart(5) + 14 * DAY; // 15 June 12:00: month 5, switch to monthly pro

  async function upgradeRefund(refund: "before" | "after", refunded: number) {
    const sub = await subscribeAndPay(fx, { plan: "plus", interval: "year", amountPaid: 19_000 });
    expect(await months(fx, sub.userId, 1, 3)).toEqual([PLUS, PLUS, PLUS]);
    fx.stripe.prorationStatus = "paid";
    const up = await changePlanAt(fx, sub.userId, "pro", UP_AT);
    expect(up.json).toMatchObject({ status: "upgraded", creditsAdded: 30_000 });
    const upgradeInvoice = fx.stripe.subscriptions.get(sub.subscriptionId)?.latest_invoice as string;
    const paid = fx.stripe.invoices.get(upgradeInvoice)?.amount_paid as number;
    expect(await months(fx, sub.userId, 4, 4)).toEqual([PRO]);
    const doRefund = () => refundInvoice(fx, sub.customer, upgradeInvoice, paid, Math.round(paid * refunded), monthStart(4) + 5 * DAY);
    if (refund === "before") await doRefund();
    await months(fx, sub.userId, 5, 5);
    const sw = toMonthly(sub, END_AT);
    expect(await applySwitch(fx, sub, sw, END_AT)).toBe("allowance_granted");
    if (refund === "after") await doRefund();
    await months(fx, sub.userId, 6, 8);
    await audit(sub.userId);
    return balanceOf(fx, sub.userId);
  }

  it("an upgrade refunded in full before or after the year's end: the top-up and its months back, base months stay", async () => {
    // base months 0..5 at plus (240,000) + monthly invoice 100,000; upgrade G = 30,000 + 2 x 60,000 fully returned
    const expected = 10_000 + 6 * PLUS + PRO;
    expect(await upgradeRefund("before", 1)).toBe(expected);
    expect(await upgradeRefund("after", 1)).toBe(expected);
  });

  it("an upgrade refunded 10% before or after the year's end: the same either way", async () => {
    const before = await upgradeRefund("before", 0.1);
    expect(await upgradeRefund("after", 0.1)).toBe(before);
  });
});
