import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { annualCancellation, balanceOf, DAY, months, monthStart, PRO, refundInvoice, type Sub, YEAR } from "../helpers/annual.js";

/**
 * Red team round 5 (commit 636d0cd), RT5-1: a refund applied before a late year-end takes a month
 * twice. The refund counts what the annual invoice "has granted so far" from its share
 * (`grantedSoFar`, lib/billing/refunds.ts), including a month granted after the year's end
 * (the sweep ran before the cancellation's event arrived); the late `year-end#…` then takes that
 * month back again (`endYear`, lib/ledger/paid-year.ts), and turns it into budget of a year that
 * grants nothing more. Nothing gives the refund's excess take back.
 *
 * Sequence: pro annual (100,000 a month, 1,200.00) from 1 January; months 1..4 granted; the
 * subscription is canceled at once on 31 May 20:00 UTC (month 4 in progress: the year ends after
 * month 4); the annual invoice is refunded in full on 1 June 14:00.
 *  - delivered on time: the year ends after month 4; the refund takes month 0 + months 1..4 =
 *    500,000: 10,000 + 500,000 − 500,000 = 10,000.
 *  - the deletion delivered two days late (2 June; Stripe retries for 3 days), the sweep having
 *    granted month 5 on 1 June 12:00 and the refund applied at once: the refund takes 600,000
 *    (months 0..5), the year-end takes month 5 (100,000) again: −90,000 observed.
 * Expected by arithmetic: 10,000 in both orders (the refund takes what the year granted, months
 * 0..4; month 5 is not the customer's and is taken once).
 */
captureLogs();
const fx = useBillingFixture();

const CANCELED_AT = monthStart(5) - 16 * 3_600; // 31 May 20:00 UTC: month 4 in progress
const REFUNDED_AT = monthStart(5) + 2 * 3_600; // 1 June 14:00

async function run(deletionLate: boolean) {
  const sub: Sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 120_000 });
  expect(await months(fx, sub.userId, 1, 4)).toEqual([PRO, PRO, PRO, PRO]);
  const cancellation = annualCancellation(fx, sub, CANCELED_AT);
  const deliverDeletion = cancellation.deliver;
  if (!deletionLate) await deliverDeletion(CANCELED_AT + 5);
  // the sweep on 1 June 12:00 (grants month 5 from the year only while the deletion is not applied)
  expect(await months(fx, sub.userId, 5, 5)).toEqual([deletionLate ? PRO : 0]);
  expect(await refundInvoice(fx, sub.customer, sub.invoiceId, 120_000, 120_000, REFUNDED_AT)).toBe("clawed_back");
  if (deletionLate) await deliverDeletion(monthStart(5) + 2 * DAY);
  expect(await fx.deps.ledger.store.getAccount(sub.userId)).toMatchObject({ plan: "free" });
  expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  return balanceOf(fx, sub.userId);
}

describe("red team 5: a full refund applied before a late cancellation's year-end", () => {
  it("RT5-1: the month granted after the end is taken once, whichever arrives first", async () => {
    const onTime = await run(false);
    expect(onTime).toBe(10_000 + 5 * PRO - 5 * PRO); // 10,000
    const late = await run(true);
    expect(late).toBe(onTime); // observed: -90,000 (month 5 taken by the refund and by the year-end)
  });
});
