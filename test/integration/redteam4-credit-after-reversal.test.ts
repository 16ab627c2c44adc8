import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { subscribeAndPay, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { chargeRefunded, uniqueStripeId } from "../helpers/stripe-events.js";
import { refundEvent } from "../helpers/stripe-reversals.js";
import { applySwitchUpdate, balanceOf, creditedDowngrade, DAY, months, monthStart, PLUS, PRO, type Sub } from "../helpers/annual.js";

/**
 * Red team round 4 (commit faef294), RT4-4: a credited downgrade delivered after a refund that
 * failed takes too little. While the annual invoice's refund binds, its months grant 0 and record
 * `withheld` (byMonth 0); when the refund fails, the reinstate gives that withheld back as credits,
 * but the month stays recorded as having granted 0. A credited portal downgrade's invoice.paid that
 * arrives after that settles the passed month from the recorded 0: the credit "takes from what the
 * month granted", finds nothing, and takes nothing — although the month was in effect granted in
 * full by the give-back. Delivered before the failure (or on time), the same credit takes its
 * 60,000. The difference is credits for nothing.
 *
 * Sequence (all within three days, Stripe's retry window): pro annual (100,000 a month, 1,200.00);
 * months 1..5 granted; 30 June 20:00 pro → plus in the portal, the difference credited back (the
 * period take for the 16 hours left of June: floor(60,000 × 16 / 720) = 1,333; share −60,000 from
 * month 6); 30 June 21:00 the annual invoice is refunded in full (takes 600,000, budget 0); 1 July
 * 12:00 month 6 (0, withheld); 2 July the refund fails (refund.failed): everything held back comes
 * back; months 7..11.
 *  - the credit's invoice.paid delivered on time (30 June 20:00): month 6 would have granted
 *    100,000 − 60,000, so the failure gives back 600,000 + 40,000: the year nets as without the
 *    refund: 10,000 + 100,000 + 5 × 100,000 − 1,333 + 6 × 40,000 = 848,667.
 *  - the same invoice.paid delivered on 3 July (after the failure): the failure gives back 600,000 +
 *    100,000 and the late credit takes nothing for month 6: 908,667 observed (60,000 for nothing).
 */
captureLogs();
const fx = useBillingFixture();

const AT = monthStart(6) - 16 * 3_600; // 30 June 20:00 UTC (month 6 starts 1 July 12:00)
const REFUND_AT = AT + 3_600;
const FAILED_AT = monthStart(6) + DAY;

function downgrade(sub: Sub) {
  return creditedDowngrade(sub, AT, { credit: 30_000, fullPrice: 11_600 });
}

async function year(creditDeliveredAt: number) {
  const sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 120_000 });
  expect(await months(fx, sub.userId, 1, 5)).toEqual(Array(5).fill(PRO));
  const down = downgrade(sub);
  await applySwitchUpdate(fx, sub, down, AT);
  const deliverCredit = async () => {
    fx.clock.value = creditDeliveredAt * 1000;
    expect((await fx.deliver(down.paid)).json.outcome).toBe("downgrade_credit_recorded");
  };
  if (creditDeliveredAt < REFUND_AT) await deliverCredit();
  const refund = { chargeId: uniqueStripeId("ch"), paymentIntent: uniqueStripeId("pi") };
  fx.stripe.invoicePayments.set(refund.paymentIntent, sub.invoiceId);
  fx.clock.value = REFUND_AT * 1000;
  const refunded = await fx.deliver(chargeRefunded({ ...refund, customer: sub.customer, amount: 120_000, refunded: 120_000, created: REFUND_AT }));
  expect(refunded.json.outcome).toBe("clawed_back");
  // while the refund binds, month 6 grants nothing of the annual payment; the credit, once
  // recorded, takes its difference all the same (linear: lib/ledger/paid-year.ts, evaluateMonth)
  expect(await months(fx, sub.userId, 6, 6)).toEqual([creditDeliveredAt < REFUND_AT ? -(PRO - PLUS) : 0]);
  fx.clock.value = FAILED_AT * 1000;
  const failed = refundEvent("refund.failed", { refundId: uniqueStripeId("re"), ...refund, amount: 120_000, refundCreated: REFUND_AT, created: FAILED_AT });
  expect((await fx.deliver(failed)).json.outcome).toBe("reinstated");
  if (creditDeliveredAt >= REFUND_AT) await deliverCredit();
  expect(await months(fx, sub.userId, 7, 11)).toEqual(Array(5).fill(PLUS));
  expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  return balanceOf(fx, sub.userId);
}

describe("red team 4: a credited downgrade delivered after a failed refund gave the months back", () => {
  it("RT4-4: the credit takes its months whether it arrived before or after the refund failed", async () => {
    const onTime = await year(AT + 5);
    expect(onTime).toBe(10_000 + PRO + 5 * PRO - 1_333 + 6 * PLUS); // 848,667
    const late = await year(monthStart(6) + 2 * DAY); // 3 July 12:00
    expect(late).toBe(onTime); // observed on faef294: 908,667
  });
});
