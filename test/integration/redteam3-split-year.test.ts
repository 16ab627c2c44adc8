import { describe, expect, it } from "vitest";
import type { BillingAccount } from "../../lib/billing/index.js";
import { invoicePaid, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";
import { balanceOf, changePlanAt, DAY, months, monthStart, PLUS, PRO, YEAR } from "../helpers/annual.js";

/**
 * Red team round 3 (commit 3ac56fb), RT3-2: `yearOf` finds a year within ANCHOR_TOLERANCE_MS (5 s)
 * "so a year whose months all grant nothing over a rounding difference" is not a silent loss, but
 * `withPaidShare` records each payment under its *exact* anchor. The annual invoice's share is
 * anchored at its line's period start; an upgrade's at the subscription's period start. When the
 * two differ by a second, the upgrade starts a second year, and from then on `monthGrant` finds
 * the exact one (the upgrade's): the annual invoice's months silently stop granting.
 */
captureLogs();
const fx = useBillingFixture();

describe("red team 3: a year split over a one-second anchor difference", () => {
  it("RT3-2: an upgrade on an annual year whose invoice line starts 1 s before the subscription period keeps the months paid by the annual invoice", async () => {
    const userId = `rt3-2-${uniqueStripeId("u")}`;
    fx.clock.value = T0 * 1000;
    expect((await fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/subscribe", { plan: "plus", interval: "year" })).status).toBe(200);
    const account = (await fx.deps.ledger.store.getAccount(userId)) as BillingAccount;
    const customer = account.stripeCustomerId as string;
    const subscriptionId = uniqueStripeId("sub");
    const invoiceId = uniqueStripeId("in");
    const subscription = subscriptionObject({ id: subscriptionId, customer, price: "price_plus_yearly", userId, periodStart: T0, periodEnd: T0 + YEAR, latestInvoice: invoiceId, metadata: { plan: "plus", interval: "year" } });
    fx.stripe.subscriptions.set(subscriptionId, subscription);
    expect(
      (await fx.deliver(stripeEvent("checkout.session.completed.subscription", { object: { id: account.pendingCheckout?.sessionId, customer, subscription: subscriptionId, metadata: { userId, plan: "plus", interval: "year" } } }))).status,
    ).toBe(200);
    // the annual invoice's line starts one second before the subscription's period (within the 5 s tolerance)
    const paid = invoicePaid({ invoiceId, customer, subscriptionId, userId, price: "price_plus_yearly", amountPaid: 48_000, linePeriod: { start: T0 - 1, end: T0 + YEAR } });
    expect((await fx.deliver(paid)).json.outcome).toBe("allowance_granted");
    expect(await months(fx, userId, 1, 3, T0)).toEqual([PLUS, PLUS, PLUS]); // the tolerance finds the year
    // 16 April: upgrade to pro through change-plan (paid)
    const res = await changePlanAt(fx, userId, "pro", monthStart(3) + 15 * DAY);
    expect(res.json).toMatchObject({ status: "upgraded" });
    const start = await balanceOf(fx, userId);
    const granted = await months(fx, userId, 4, 11, T0);
    // months 4..11: plus (paid by the annual invoice) + the pro difference (paid by the upgrade)
    expect(granted).toEqual(Array(8).fill(PRO)); // on 3ac56fb: 8 x 60,000 (the annual invoice's share is in another "year")
    expect((await balanceOf(fx, userId)) - start).toBe(8 * PRO);
  });
});
