import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { subscribeAndPay, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { chargeRefunded, uniqueStripeId } from "../helpers/stripe-events.js";
import { applySwitchUpdate, balanceOf, creditedDowngrade, DAY, months, monthStart, PLUS, PRO, type Sub } from "../helpers/annual.js";

/**
 * Red team round 4 (commit faef294), RT4-2: RT3-1 made a *late credit* settle each passed month as
 * it would have gone in time, but the mirror case is open: a *refund* whose month already went by
 * when it is applied. A credited portal downgrade takes "from what the month's payments grant and
 * never more": after the annual invoice is refunded its months grant 0 and the credit takes 0 from
 * them. But when the refund is applied after a month was granted (its event delivered late, or the
 * sweep ran before it), that month granted 100,000 − 60,000 = 40,000 and the refund then takes the
 * whole 100,000 back as "granted by the payment": the credit's 60,000 take stands on a month the
 * refunded payment no longer pays for. Nothing re-evaluates the month, so the same Stripe facts
 * give balances 60,000 apart depending on when the refund was applied.
 *
 * Sequence: pro annual (100,000 a month, 1,200.00) from 1 January; months 1..3 granted; on 16 April
 * pro → plus in the portal, the difference credited back (period take 30,000, share −60,000 from
 * month 4); month 4 grants 40,000; the annual invoice is refunded in full at 1 June 11:00 (month 5
 * starts 1 June 12:00).
 *  - applied on time: it takes month 0 + months 1..4 = 500,000, budget 0, months 5..11 grant 0:
 *    10,000 + 400,000 − 30,000 + 40,000 − 500,000 = −80,000.
 *  - the same event delivered two days late, after the sweep granted month 5 (40,000): it takes
 *    600,000: 10,000 + 400,000 − 30,000 + 80,000 − 600,000 = −140,000 observed.
 * Second case: the same without a late delivery — the refund at 1 June 13:00, delivered at once;
 * whether the sweep granted month 5 at 1 June 12:00 or (outage, RT3-5's back-fill) only after the
 * refund decides between −140,000 and −80,000.
 * Fixed by making a credit's take linear (lib/ledger/paid-year.ts, evaluateMonth): it takes its
 * whole difference from each month whatever was refunded, so the on-time figure is now −500,000
 * (the customer has both the payment and the credit back) and both orders give it.
 */
captureLogs();
const fx = useBillingFixture();

const AT = monthStart(3) + 15 * DAY; // 16 April

function downgrade(sub: Sub) {
  return creditedDowngrade(sub, AT, { credit: 34_000, fullPrice: 13_200 });
}

/** Pro annual, credited downgrade on 16 April, months 1..4 granted; a full refund of the annual invoice created at `refundedAt`. */
async function refundedYear(input: { refundedAt: number; deliverAt: number; month5BeforeRefund: boolean }) {
  const sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 120_000 });
  expect(await months(fx, sub.userId, 1, 3)).toEqual([PRO, PRO, PRO]);
  const down = downgrade(sub);
  await applySwitchUpdate(fx, sub, down, AT);
  expect((await fx.deliver(down.paid)).json.outcome).toBe("downgrade_credit_recorded");
  expect(await months(fx, sub.userId, 4, 4)).toEqual([PLUS]);
  const paymentIntent = uniqueStripeId("pi");
  fx.stripe.invoicePayments.set(paymentIntent, sub.invoiceId);
  const refund = chargeRefunded({
    chargeId: uniqueStripeId("ch"),
    paymentIntent,
    customer: sub.customer,
    amount: 120_000,
    refunded: 120_000,
    created: input.refundedAt,
  });
  if (input.month5BeforeRefund) expect(await months(fx, sub.userId, 5, 5)).toEqual([PLUS]);
  fx.clock.value = input.deliverAt * 1000;
  expect((await fx.deliver(refund)).json.outcome).toBe("clawed_back");
  await months(fx, sub.userId, input.month5BeforeRefund ? 6 : 5, 11);
  expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  return balanceOf(fx, sub.userId);
}

describe("red team 4: a refund applied after a month a credit took from", () => {
  it("RT4-2: the refund's event delivered two days late ends the year where it would have on time", async () => {
    const refundedAt = monthStart(5) - 3_600; // 1 June 11:00, before month 5
    const onTime = await refundedYear({ refundedAt, deliverAt: refundedAt + 5, month5BeforeRefund: false });
    // after the fix (a credit takes its whole difference, whatever was refunded: linear), months
    // 5..11 move -60,000 each: 10,000 + 400,000 - 30,000 + 40,000 - 500,000 - 420,000 = -500,000
    expect(onTime).toBe(10_000 + 4 * PRO - 30_000 + PLUS - 5 * PRO - 7 * (PRO - PLUS));
    const late = await refundedYear({ refundedAt, deliverAt: monthStart(5) + 2 * DAY, month5BeforeRefund: true });
    expect(late).toBe(onTime); // observed on faef294: -140,000
  });

  it("RT4-2b: the same facts delivered at once end the same whether the sweep granted month 5 before the refund or after", async () => {
    const refundedAt = monthStart(5) + 3_600; // 1 June 13:00: one hour into month 5
    const sweptFirst = await refundedYear({ refundedAt, deliverAt: refundedAt + 5, month5BeforeRefund: true });
    const sweepLate = await refundedYear({ refundedAt, deliverAt: refundedAt + 5, month5BeforeRefund: false });
    expect(sweepLate).toBe(sweptFirst); // observed on faef294: -80,000 vs -140,000
  });
});
