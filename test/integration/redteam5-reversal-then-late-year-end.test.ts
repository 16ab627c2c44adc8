import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { chargeRefunded, uniqueStripeId } from "../helpers/stripe-events.js";
import { refundEvent } from "../helpers/stripe-reversals.js";
import { annualCancellation, balanceOf, DAY, months, monthStart, PRO, type Sub, YEAR } from "../helpers/annual.js";

/**
 * Red team round 5 (commit 636d0cd), RT5-2: a failed refund gives back a month held back after the
 * year's end, and the late year-end does not take it. A refund's budget holds back the months
 * after it (granted 0, `withheld` 100,000 each). When the refund fails, the reversal gives back
 * what was taken plus what the budget held back — including a month the sweep held back after
 * the year ended (the cancellation's event not yet applied). The late `year-end#…` then only
 * drops that month's `withheld` from the share (it granted 0, so nothing is taken back), and the
 * 100,000 the reversal gave for it stays: credits for a month of a year Stripe had ended.
 *
 * Sequence: pro annual (100,000 a month, 1,200.00) from 1 January; months 1..3; the annual invoice
 * refunded in full on 15 April (takes 400,000, budget 0); month 4 grants 0 (withheld 100,000);
 * the subscription is canceled at once on 31 May 20:00 (the year ends after month 4); the refund
 * fails on 1 June 18:00 (refund.failed).
 *  - delivered on time: the reversal gives back 400,000 + 100,000: 10,000 + 400,000 − 400,000 +
 *    500,000 = 510,000 (months 0..4, the year the customer had).
 *  - the deletion delivered two days late (2 June), the sweep having held back month 5 on 1 June
 *    12:00: the reversal gives back 600,000, the year-end takes nothing: 610,000 observed.
 * Expected by arithmetic: 510,000 in both orders.
 */
captureLogs();
const fx = useBillingFixture();

const REFUNDED_AT = monthStart(3) + 14 * DAY; // 15 April
const CANCELED_AT = monthStart(5) - 16 * 3_600; // 31 May 20:00 UTC: month 4 in progress
const FAILED_AT = monthStart(5) + 6 * 3_600; // 1 June 18:00

async function run(deletionLate: boolean) {
  const sub: Sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 120_000 });
  expect(await months(fx, sub.userId, 1, 3)).toEqual([PRO, PRO, PRO]);
  const charge = { chargeId: uniqueStripeId("ch"), paymentIntent: uniqueStripeId("pi"), refundId: uniqueStripeId("re") };
  fx.stripe.invoicePayments.set(charge.paymentIntent, sub.invoiceId);
  fx.clock.value = (REFUNDED_AT + 5) * 1000;
  const refunded = chargeRefunded({ ...charge, customer: sub.customer, amount: 120_000, refunded: 120_000, created: REFUNDED_AT });
  expect((await fx.deliver(refunded)).json.outcome).toBe("clawed_back");
  expect(await months(fx, sub.userId, 4, 4)).toEqual([0]); // held back by the refund's budget
  const cancellation = annualCancellation(fx, sub, CANCELED_AT);
  const deliverDeletion = cancellation.deliver;
  if (!deletionLate) await deliverDeletion(CANCELED_AT + 5);
  await months(fx, sub.userId, 5, 5); // the sweep on 1 June 12:00: holds back month 5 only while the deletion is not applied
  fx.clock.value = (FAILED_AT + 5) * 1000;
  const failed = refundEvent("refund.failed", { ...charge, amount: 120_000, refundCreated: REFUNDED_AT, created: FAILED_AT });
  expect((await fx.deliver(failed)).json.outcome).toBe("reinstated");
  if (deletionLate) await deliverDeletion(monthStart(5) + 2 * DAY);
  expect(await fx.deps.ledger.store.getAccount(sub.userId)).toMatchObject({ plan: "free" });
  expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  return balanceOf(fx, sub.userId);
}

describe("red team 5: a failed refund applied before a late cancellation's year-end", () => {
  it("RT5-2: the reversal gives back no month after the end, whichever arrives first", async () => {
    const onTime = await run(false);
    expect(onTime).toBe(10_000 + 5 * PRO); // 510,000
    const late = await run(true);
    expect(late).toBe(onTime); // observed: 610,000 (month 5's hold-back given back, never taken by the year-end)
  });
});
