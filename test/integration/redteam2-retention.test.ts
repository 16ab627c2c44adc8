import { describe, expect, it } from "vitest";
import { listHistory } from "../../lib/ledger/index.js";
import { subscribeAndPay, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { applySwitch, balanceOf, DAY, months, monthStart, PLUS, portalSwitch, refundInvoice, YEAR } from "../helpers/annual.js";

/**
 * Red team round 2 (commit 234fb48): `withPaidShare` keeps the years of the last 25 months but at
 * most PAID_YEARS_KEPT (8 at 234fb48; now 64 and by age first). Nine annual anchors inside one month (annual <-> monthly in the portal,
 * a day apart) drop the first year's record, and a refund of that year's invoice is then taken
 * "as if all its months were granted" (R2 again, past the count cap).
 */
captureLogs();
const fx = useBillingFixture();

describe("red team 2: paid years retention", () => {
  it("RT2-3: after 8 more annual anchors in one month, refunding the first annual invoice takes what it granted (3 months), not 12", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", interval: "year", amountPaid: 19_000 });
    expect(await months(fx, sub.userId, 1, 2, 1_767_268_800)).toEqual([PLUS, PLUS]);
    // invoice A granted month 0 and months 1, 2 (120,000). Then 8 x (annual -> monthly -> annual), one switch a day.
    let at = monthStart(2) + 2 * DAY;
    for (let round = 0; round < 8; round++) {
      await applySwitch(
        fx,
        sub,
        portalSwitch(sub, { at, price: "price_plus_monthly", periodEnd: at + 31 * DAY, oldPrice: "price_plus_yearly", credit: 18_000, fullPrice: 1_900 }),
        at,
      );
      at += DAY;
      await applySwitch(
        fx,
        sub,
        portalSwitch(sub, { at, price: "price_plus_yearly", periodEnd: at + YEAR, oldPrice: "price_plus_monthly", credit: 1_800, fullPrice: 19_000 }),
        at,
      );
      at += DAY;
    }
    const years = (await fx.deps.ledger.store.getAccount(sub.userId))?.paidYears ?? [];
    expect.soft(years.some((year) => year.shares.some((share) => share.payment === `invoice#${sub.invoiceId}`)), "invoice A's year kept (within 25 months)").toBe(true);
    const before = await balanceOf(fx, sub.userId);
    expect(await refundInvoice(fx, sub.customer, sub.invoiceId, 19_000, 19_000, at + DAY)).toBe("clawed_back");
    const [refund] = (await listHistory(fx.deps.ledger, { userId: sub.userId, limit: 100 })).entries.filter((entry) => entry.reason === "refund");
    expect(refund?.amount).toBe(-3 * PLUS); // actual: -480,000 (12 months taken, 9 never granted)
    expect(before - (await balanceOf(fx, sub.userId))).toBe(3 * PLUS);
  });
});
