import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { yearOf } from "../../lib/ledger/paid-year.js";
import { invoicePaid, subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";
import { balanceOf, DAY, months, monthStart, PLUS, type Sub, YEAR } from "../helpers/annual.js";

/**
 * Red team round 8 (commit 9c55f5f), RT8-2: the paid annual year of a user's *second* live
 * subscription is ended by the renewals of the *first* (current, monthly) one; once the first is
 * canceled and the annual one promoted, its paid months never grant.
 *
 * An annual invoice records its year in `paidYears` whichever subscription it belongs to (the
 * extra subscription's too: it is paid). `annualYearLeft` (lib/billing/subscription.ts) ends, for
 * every state of the *current* subscription, each paid year its period starts strictly inside of
 * (`yearsLeftBy`, lib/ledger/paid-year.ts) — with no regard to whose year it is. The current
 * subscription is monthly: each of its renewals starts a period inside the extra's annual year, so
 * the first renewal ends that year after month 0 (`endAnnualYear`). When the monthly subscription
 * is canceled, the annual one is promoted ("a paying user is never dropped to free while another
 * live subscription exists") and the schedule is anchored at its year — whose months are all
 * refused (`monthGrant`: the year was left early).
 *
 * Sequence: pro monthly A from 1 January (its first invoice paid); the user also subscribes plus
 * annual B from 20 January (recorded extra, reported; its annual invoice paid: 40,000, share
 * 11 × 40,000); A renews on 1 February and 1 March (customer.subscription.updated; their invoices
 * are left out, they grant the same in both orders); A canceled at once on 10 March (period
 * 1 March → 1 April); B promoted; the sweep runs through B's month 4 (20 May).
 *  - A's renewal updates delivered on time: B's year ends after month 0 (at A's 1 February
 *    renewal): months 1..4 of B never grant: 150,000 observed.
 *  - the same updates delayed until after the deletion (stale then): B's year ends after month 1
 *    (the canceled A's own period, 1 March, is inside it too): months 2..4 never grant: 190,000.
 * Expected by arithmetic: B's year was paid in full and B is live: 10,000 + 100,000 (A) + 40,000
 * (B month 0) + 4 × 40,000 (B months 1..4) = 310,000, whatever the order.
 */
captureLogs();
const fx = useBillingFixture();

const B_START = T0 + 19 * DAY; // 20 January 12:00
const FEB = T0 + 31 * DAY; // 1 February 12:00
const MAR = FEB + 28 * DAY; // 1 March 12:00
const APR = MAR + 31 * DAY;
const CANCELED_AT = monthStart(2) + 9 * DAY; // 10 March 12:00

async function run(renewalsOnTime: boolean) {
  const a: Sub = await subscribeAndPay(fx, { plan: "pro", interval: "month", amountPaid: 4_900 });
  const bId = uniqueStripeId("sub");
  const b = subscriptionObject({ id: bId, customer: a.customer, price: "price_plus_yearly", userId: a.userId, periodStart: B_START, periodEnd: B_START + YEAR });
  fx.stripe.subscriptions.set(bId, b);
  fx.clock.value = (B_START + 5) * 1000;
  expect((await fx.deliver(stripeEvent("customer.subscription.created", { created: B_START, object: b }))).json.outcome).toBe(
    "subscription_second_live_subscription",
  );
  const bInvoice = invoicePaid({
    invoiceId: uniqueStripeId("in"),
    customer: a.customer,
    subscriptionId: bId,
    userId: a.userId,
    price: "price_plus_yearly",
    amountPaid: 19_000,
    created: B_START + 1,
    linePeriod: { start: B_START, end: B_START + YEAR },
  });
  expect((await fx.deliver(bInvoice)).json.outcome).toBe("allowance_granted");
  const aState = (start: number, end: number, status = "active") =>
    subscriptionObject({ id: a.subscriptionId, customer: a.customer, price: "price_pro_monthly", userId: a.userId, status, periodStart: start, periodEnd: end });
  const renewals = [
    stripeEvent("customer.subscription.updated", { created: FEB, object: aState(FEB, MAR) }),
    stripeEvent("customer.subscription.updated", { created: MAR, object: aState(MAR, APR) }),
  ];
  const deliverRenewals = async () => {
    for (const renewal of renewals) {
      fx.clock.value = (renewal.created + 5) * 1000;
      expect((await fx.deliver(renewal)).status).toBe(200);
    }
  };
  if (renewalsOnTime) await deliverRenewals();
  const canceled = aState(MAR, APR, "canceled");
  fx.stripe.subscriptions.set(a.subscriptionId, canceled);
  fx.clock.value = (CANCELED_AT + 5) * 1000;
  expect((await fx.deliver(stripeEvent("customer.subscription.deleted", { created: CANCELED_AT, object: canceled }))).json.outcome).toBe(
    "subscription_promoted",
  );
  if (!renewalsOnTime) await deliverRenewals();
  await months(fx, a.userId, 2, 4, B_START); // the sweep after each of B's month boundaries (back-fills month 1)
  const account = await fx.deps.ledger.store.getAccount(a.userId);
  expect(account).toMatchObject({ plan: "plus", interval: "year", periodAnchor: B_START * 1000 });
  expect((await auditAccount(fx.deps.ledger, a.userId)).problems).toEqual([]);
  return { balance: await balanceOf(fx, a.userId), bYearEnd: yearOf(account?.paidYears, B_START * 1000)?.endedAfter };
}

describe("red team 8: a second live annual subscription's paid year ended by the current monthly one's renewals", () => {
  it("RT8-2: the promoted annual subscription's months grant, whenever the monthly renewals arrive", async () => {
    const expected = { balance: 10_000 + 100_000 + PLUS + 4 * PLUS, bYearEnd: undefined };
    expect(await run(true)).toEqual(expected); // observed: { balance: 150,000, bYearEnd: 0 }
    expect(await run(false)).toEqual(expected); // observed: { balance: 190,000, bYearEnd: 1 }
  });
});
