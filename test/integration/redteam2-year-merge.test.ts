import { describe, expect, it } from "vitest";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { applySwitch, balanceOf, DAY, months, PLUS, portalSwitch, YEAR } from "../helpers/annual.js";

/**
 * Red team round 2 (commit 234fb48): `yearOf` matches a year within an hour (ANCHOR_TOLERANCE_MS),
 * and `withPaidShare` adds a payment to the year it matches. Two different annual years that start
 * within an hour (annual -> monthly -> annual in the portal) become one year: the first year's
 * share (its unused time credited back by Stripe at the switch) keeps paying the new year's months.
 */
captureLogs();
const fx = useBillingFixture();

describe("red team 2: two annual years within an hour", () => {
  it("RT2-1: annual -> monthly -> annual in the portal within 40 minutes grants each month of the new year once, not twice", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", interval: "year", amountPaid: 19_000 });
    // +20 min: annual -> monthly. Stripe credits the unused year (18,990 cents) to the customer balance.
    const a1 = T0 + 20 * 60;
    await applySwitch(
      fx,
      sub,
      portalSwitch(sub, { at: a1, price: "price_plus_monthly", periodEnd: a1 + 31 * DAY, oldPrice: "price_plus_yearly", credit: 18_990, fullPrice: 1_900 }),
      a1,
    );
    // +40 min: monthly -> annual: a new year starts at a2 (paid 19,000 less the monthly credit)
    const a2 = T0 + 40 * 60;
    const back = portalSwitch(sub, { at: a2, price: "price_plus_yearly", periodEnd: a2 + YEAR, oldPrice: "price_plus_monthly", credit: 1_899, fullPrice: 19_000 });
    await applySwitch(fx, sub, back, a2);
    expect(await fx.deps.ledger.store.getAccount(sub.userId)).toMatchObject({ plan: "plus", interval: "year", periodAnchor: a2 * 1000 });
    const start = await balanceOf(fx, sub.userId);
    // One paid year at plus (the first year's money went back as credit): months 1..11 at 40,000.
    const granted = await months(fx, sub.userId, 1, 11, a2);
    const years = (await fx.deps.ledger.store.getAccount(sub.userId))?.paidYears;
    expect.soft(years?.length, "two different years kept apart").toBe(2); // actual: 1 year holding both invoices' shares
    expect(granted).toEqual(Array(11).fill(PLUS)); // actual: 11 x 80,000
    expect((await balanceOf(fx, sub.userId)) - start).toBe(11 * PLUS); // actual: 880,000 (440,000 credits for nothing)
  });
});
