import { describe, expect, it } from "vitest";
import { auditAccount, listHistory } from "../../lib/ledger/index.js";
import { subscribeAndPay, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { uniqueStripeId } from "../helpers/stripe-events.js";
import { disputeClosed, disputeCreated } from "../helpers/stripe-reversals.js";
import { applySwitchUpdate, balanceOf, changePlanAt, creditedDowngrade, DAY, months, monthStart, PLUS, PRO, refundInvoice } from "../helpers/annual.js";

/**
 * Red team round 4 (commit faef294), RT4-3: a won dispute gives back more than it took. When two
 * payments of a year are both held back by budgets and a credited downgrade covers the month,
 * `evaluateMonth` computes the month's withheld once, net of the credit (what the month would
 * grant without any budget, less what it grants), and hands all of it to the first share in
 * canonical order (the annual invoice, fromMonth 1). But either budget alone holds back the same
 * amount — the hold-back is not additive — so the first share is recorded as holding back what
 * the other payment's refund holds back. When the first share's dispute is won, its give-back
 * (clawed + withheld) returns that too: credits for nothing.
 *
 * Sequence: plus annual (40,000 a month); months 1..3; change-plan upgrade to pro on 16 April
 * (top-up 30,000, share +60,000 from month 4); months 4, 5 at 100,000; on 16 June pro → plus in
 * the portal with the difference credited back (period take 30,000, share −60,000 from month 6);
 * months 6, 7 at 40,000; on 3 August the upgrade invoice is refunded in full (takes 30,000 + 4 ×
 * 60,000 = 270,000, its months held back); then:
 *  - without more: months 8..11 grant 40,000 (annual) − 40,000 (the credit, capped) = 0 each:
 *    10,000 + 40,000 + 120,000 + 30,000 + 200,000 − 30,000 + 80,000 − 270,000 = 180,000.
 *  - with a dispute of the annual invoice opened on 4 August (takes 40,000 + 7 × 40,000 = 320,000,
 *    budget 0; months 8, 9 grant 0, the annual share recorded as withholding 40,000 each) and won
 *    on 4 October: the year must end where it would without the dispute, 180,000 (months 8, 9
 *    grant 0 without the dispute too: the refunded upgrade pays nothing and the credit takes the
 *    annual 40,000). Observed: the won dispute gives back 400,000 (320,000 + 80,000): 260,000.
 * Fixed by making a credit's take linear (lib/ledger/paid-year.ts, evaluateMonth): each share's
 * hold-back is its own, the credit takes 60,000 from every month (so months 8..11 move −20,000
 * without the dispute: 100,000 at the end), and the won dispute gives back what it took and what
 * its own budget held back (400,000), which nets to the year without the dispute.
 */
captureLogs();
const fx = useBillingFixture();

async function year(withDispute: boolean) {
  const sub = await subscribeAndPay(fx, { plan: "plus", interval: "year", amountPaid: 48_000 });
  expect(await months(fx, sub.userId, 1, 3)).toEqual([PLUS, PLUS, PLUS]);
  expect((await changePlanAt(fx, sub.userId, "pro", monthStart(3) + 15 * DAY)).json).toEqual({ status: "upgraded", plan: "pro", creditsAdded: 30_000 });
  const upgrade = fx.stripe.subscriptions.get(sub.subscriptionId)?.latest_invoice as string;
  const upgradePaid = fx.stripe.invoices.get(upgrade)?.amount_paid as number;
  expect(await months(fx, sub.userId, 4, 5)).toEqual([PRO, PRO]);
  const downAt = monthStart(5) + 15 * DAY; // 16 June
  const down = creditedDowngrade(sub, downAt, { credit: 20_000, fullPrice: 8_000 });
  await applySwitchUpdate(fx, sub, down, downAt);
  expect((await fx.deliver(down.paid)).json.outcome).toBe("downgrade_credit_recorded");
  expect(await months(fx, sub.userId, 6, 7)).toEqual([PLUS, PLUS]);
  expect(await refundInvoice(fx, sub.customer, upgrade, upgradePaid, upgradePaid, monthStart(7) + 2 * DAY)).toBe("clawed_back");

  const dispute = { disputeId: uniqueStripeId("dp"), chargeId: uniqueStripeId("ch"), paymentIntent: uniqueStripeId("pi"), amount: 48_000 };
  fx.stripe.invoicePayments.set(dispute.paymentIntent, sub.invoiceId);
  if (withDispute) {
    fx.clock.value = (monthStart(7) + 3 * DAY) * 1000;
    expect((await fx.deliver(disputeCreated({ ...dispute, created: monthStart(7) + 3 * DAY }))).json.outcome).toBe("clawed_back");
  }
  // linear credit (the fix): the credit takes its 60,000 from each month whatever was refunded;
  // the annual share grants 40,000 unless the dispute holds it back
  const credit = -(PRO - PLUS);
  expect(await months(fx, sub.userId, 8, 9)).toEqual(withDispute ? [credit, credit] : [PLUS + credit, PLUS + credit]);
  if (withDispute) {
    fx.clock.value = (monthStart(9) + 3 * DAY) * 1000;
    expect((await fx.deliver(disputeClosed({ ...dispute, status: "won", created: monthStart(9) + 3 * DAY }))).json.outcome).toBe("reinstated");
  }
  expect(await months(fx, sub.userId, 10, 11)).toEqual([PLUS - (PRO - PLUS), PLUS - (PRO - PLUS)]);
  expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  const history = (await listHistory(fx.deps.ledger, { userId: sub.userId, limit: 100 })).entries;
  return { balance: await balanceOf(fx, sub.userId), history };
}

describe("red team 4: a won dispute when another payment of the year is refunded and a credit covers the month", () => {
  it("RT4-3: the won dispute gives back exactly what the dispute took, not what the other refund holds back", async () => {
    const without = await year(false);
    // months 8..11: 40,000 (annual) + 0 (the upgrade, refunded) - 60,000 (the credit) each
    expect(without.balance).toBe(10_000 + PLUS + 3 * PLUS + 30_000 + 2 * PRO - 30_000 + 2 * PLUS - 270_000 + 4 * (2 * PLUS - PRO)); // 100,000
    const disputed = await year(true);
    const taken = disputed.history.find((entry) => entry.reason === "dispute")?.amount;
    const given = disputed.history.find((entry) => entry.reason === "reinstate")?.amount;
    expect(taken).toBe(-8 * PLUS); // -320,000: month 0 and months 1..7 of the annual invoice
    // what the dispute took, and what its budget held back of months 8 and 9 (its own share's
    // 40,000 each: the hold-back is each share's own, lib/ledger/paid-year.ts evaluateMonth)
    expect(given).toBe(8 * PLUS + 2 * PLUS);
    expect(disputed.balance).toBe(without.balance); // observed on faef294: 260,000
  });
});
