import { extraAnnualSubscription } from "../helpers/annual.js";
import { describe, expect, it } from "vitest";
import { auditAccount, grantAllowanceIfDue } from "../../lib/ledger/index.js";
import { yearOf } from "../../lib/ledger/paid-year.js";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject, } from "../helpers/stripe-events.js";
import { balanceOf, DAY, monthStart, PLUS, PRO, portalSwitch, type Sub, YEAR } from "../helpers/annual.js";

/**
 * Red team round 9 (commit 9c0b108), RT9-3: an extra annual subscription switched out of its year
 * in the portal *while it is still the extra one* never has that year ended: `applySubscription`
 * records an extra's newer state (`putExtraSubscription`) without `endLeftYears`. When it is
 * promoted later it is promoted on its switched (monthly) state, so the account never follows its
 * year, and nothing grants the months 1..e the year paid for up to the switch ("every month up to
 * it is granted then from the year's own payments", billing.md "A year left early"). The same
 * facts with the switch's update delivered *after* the promotion grant them: the ledger depends on
 * delivery order.
 *
 * Sequence: A pro monthly (current; invoice 100,000); B plus annual (40,000 a month) from 20
 * January 12:00 recorded as a second live subscription, its annual invoice paid (month 0: 40,000
 * and its share of months 1..11); 10 April 12:00 (B's month 2: 20 March → 20 April) B switched to
 * plus monthly in the portal (invoice paid on time: 40,000); 12 April 12:00 A canceled at once:
 * B is promoted; the sweep runs on 12 April 13:00 and on 21 April.
 *  - on time (B's switch update before A's deletion): B promoted as plus monthly; B's year's
 *    months 1..2 are never granted: 10,000 + 100,000 + 40,000 + 40,000 = 190,000 observed.
 *  - B's switch update retried by Stripe, delivered on 13 April (after the promotion): B promoted
 *    on its annual state, its months 1..2 granted (back-filled), then the update ends its year after
 *    month 2: 270,000.
 * Expected by arithmetic: 10,000 + 100,000 (A) + 40,000 (B month 0) + 2 × 40,000 (B months 1..2)
 * + 40,000 (B's monthly switch) = 270,000 in both orders, B's year ended after month 2.
 */
captureLogs();
const fx = useBillingFixture();

const B_START = T0 + 19 * DAY; // 20 January 12:00
const SWITCH_AT = monthStart(3) + 9 * DAY; // 10 April 12:00: month 2 of B's year
const CANCELED_AT = SWITCH_AT + 2 * DAY; // 12 April 12:00

async function run(switchLate: boolean) {
  const a: Sub = await subscribeAndPay(fx, { plan: "pro", interval: "month", amountPaid: 4_900 });
  const { id: bId, invoiceId: bInvoice, object: b, paid } = await extraAnnualSubscription(fx, a, B_START);
  expect((await fx.deliver(paid)).json.outcome).toBe("allowance_granted");
  const bSub: Sub = { ...a, subscriptionId: bId, invoiceId: bInvoice, subscription: b };
  const sw = portalSwitch(bSub, {
    at: SWITCH_AT,
    price: "price_plus_monthly",
    periodEnd: SWITCH_AT + 30 * DAY,
    oldPrice: "price_plus_yearly",
    credit: 15_000,
    fullPrice: 1_900,
    creditPeriodEnd: B_START + YEAR,
  });
  fx.stripe.subscriptions.set(bId, sw.switched);
  if (!switchLate) {
    fx.clock.value = (SWITCH_AT + 5) * 1000;
    expect((await fx.deliver(sw.updated)).status).toBe(200);
  }
  fx.clock.value = (SWITCH_AT + 6) * 1000;
  expect((await fx.deliver(sw.paid)).json.outcome).toBe("allowance_granted");
  const canceled = subscriptionObject({
    id: a.subscriptionId,
    customer: a.customer,
    price: "price_pro_monthly",
    userId: a.userId,
    status: "canceled",
    periodStart: monthStart(3),
    periodEnd: monthStart(4),
  });
  fx.stripe.subscriptions.set(a.subscriptionId, canceled);
  fx.clock.value = (CANCELED_AT + 5) * 1000;
  expect((await fx.deliver(stripeEvent("customer.subscription.deleted", { created: CANCELED_AT, object: canceled }))).json.outcome).toBe(
    "subscription_promoted",
  );
  fx.clock.value = (CANCELED_AT + 3_600) * 1000; // the sweep, 12 April 13:00
  await grantAllowanceIfDue(fx.deps.ledger, a.userId);
  if (switchLate) {
    fx.clock.value = (CANCELED_AT + DAY) * 1000;
    expect((await fx.deliver(sw.updated)).status).toBe(200);
  }
  fx.clock.value = (SWITCH_AT + 11 * DAY) * 1000; // the sweep, 21 April
  await grantAllowanceIfDue(fx.deps.ledger, a.userId);
  const account = await fx.deps.ledger.store.getAccount(a.userId);
  expect(account).toMatchObject({ plan: "plus", interval: "month" });
  expect((await auditAccount(fx.deps.ledger, a.userId)).problems).toEqual([]);
  return { balance: await balanceOf(fx, a.userId), bYearEnd: yearOf(account?.paidYears, B_START * 1000)?.endedAfter };
}

describe("red team 9: an extra annual subscription switched to monthly before it is promoted", () => {
  it("RT9-3: B's year grants months 1..2 (up to its switch) in both delivery orders", async () => {
    const late = await run(true);
    expect(late).toEqual({ balance: 10_000 + PRO + PLUS + 2 * PLUS + PLUS, bYearEnd: 2 });
    expect(await run(false)).toEqual(late); // observed: { balance: 190,000, bYearEnd: undefined }
  });
});
