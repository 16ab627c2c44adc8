import { describe, expect, it } from "vitest";
import { paidInvoiceEvent, subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { applySwitchUpdate, balanceOf, creditedDowngrade, DAY, months, monthStart, PLUS, PRO, YEAR } from "../helpers/annual.js";

/**
 * Red team round 2 (commit 234fb48): `monthsPassed` catches up the months a late payment paid
 * for, but only for a share that grants; a portal downgrade's credit invoice that arrives after a
 * month it credited back was granted at the higher plan takes nothing for it.
 */
captureLogs();
const fx = useBillingFixture();

describe("red team 2: late proration invoices", () => {
  it("RT2-4: a portal downgrade whose credit invoice arrives after the next month was granted: that month counts at the plan paid (plus)", async () => {
    const sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 49_000 });
    expect(await months(fx, sub.userId, 1, 3, T0)).toEqual([PRO, PRO, PRO]);
    // 16 April: pro -> plus in the portal; Stripe credits the unused pro difference for months 4..11 and half of April
    const at = monthStart(3) + 15 * DAY;
    const down = creditedDowngrade(sub, at, { credit: 34_000, fullPrice: 13_200 });
    await applySwitchUpdate(fx, sub, down, at);
    const start = await balanceOf(fx, sub.userId);
    // the credit invoice's invoice.paid is delivered late (endpoint down, redelivered days later): May was granted first
    expect(await months(fx, sub.userId, 4, 4, T0)).toEqual([PRO]);
    fx.clock.value = (monthStart(4) + 3 * DAY) * 1000;
    expect((await fx.deliver(down.paid)).json.outcome).toBe("downgrade_credit_recorded");
    await months(fx, sub.userId, 5, 11, T0);
    // months 4..11 were paid at plus (the pro difference went back as credit): 8 x 40,000, and the
    // half of April credited back takes April's difference for that half (30,000)
    expect((await balanceOf(fx, sub.userId)) - start).toBe(8 * PLUS - 30_000); // on 234fb48: 8 x PLUS + 60,000 (May at pro, its money credited back)
  });

  it("RT2-5: an annual upgrade invoice paid after the year renewed grants, with it, the difference for the months of that year that passed", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", interval: "year", amountPaid: 19_000 });
    await months(fx, sub.userId, 1, 10, T0);
    fx.stripe.prorationStatus = "open"; // paid later (an open invoice the customer pays from the hosted page)
    fx.clock.value = (monthStart(10) + 15 * DAY) * 1000;
    const res = await fx.asUser(fx.fns.subscribe.route, sub.userId, "POST /v1/billing/change-plan", { plan: "pro" });
    expect(res.json).toMatchObject({ status: "upgraded", creditsAdded: 0 });
    const upgrade = fx.stripe.subscriptions.get(sub.subscriptionId)?.latest_invoice as string;
    expect(await months(fx, sub.userId, 11, 11, T0)).toEqual([PLUS]); // December at plus: the upgrade is not paid yet
    // the year renews (at pro: the subscription is on pro) and the renewal is paid on time
    const { invoicePaid } = await import("../helpers/billing.js");
    const { stripeEvent, subscriptionObject, uniqueStripeId } = await import("../helpers/stripe-events.js");
    const Y2 = T0 + YEAR;
    const renewal = uniqueStripeId("in");
    fx.clock.value = (Y2 + 10) * 1000;
    const renewed = subscriptionObject({ id: sub.subscriptionId, customer: sub.customer, price: "price_pro_yearly", userId: sub.userId, periodStart: Y2, periodEnd: Y2 + YEAR, latestInvoice: renewal });
    fx.stripe.subscriptions.set(sub.subscriptionId, renewed);
    expect((await fx.deliver(stripeEvent("customer.subscription.updated", { created: Y2, object: renewed }))).status).toBe(200);
    expect(
      (await fx.deliver(invoicePaid({ invoiceId: renewal, customer: sub.customer, subscriptionId: sub.subscriptionId, userId: sub.userId, price: "price_pro_yearly", amountPaid: 49_000, billingReason: "subscription_cycle", linePeriod: { start: Y2, end: Y2 + YEAR } }))).json.outcome,
    ).toBe("allowance_granted");
    // 10 January: the old year's upgrade invoice is paid at last
    const start = await balanceOf(fx, sub.userId);
    fx.clock.value = (Y2 + 9 * DAY) * 1000;
    expect((await fx.deliver(paidInvoiceEvent(fx, upgrade))).json.outcome).toBe("upgrade_topped_up");
    const purchase = await fx.billing.store.getPurchase(upgrade);
    expect(purchase?.share).toMatchObject({ fromMonth: 11, monthly: PRO - PLUS }); // it paid December's difference
    // with the payment: November's top-up (half: 30,000) and December's difference (60,000), passed before it was paid
    expect((await balanceOf(fx, sub.userId)) - start).toBe(30_000 + (PRO - PLUS)); // actual: 30,000 only
  });
});
