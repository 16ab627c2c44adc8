import { describe, expect, it } from "vitest";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { uniqueStripeId } from "../helpers/stripe-events.js";
import { disputeClosed, disputeCreated } from "../helpers/stripe-reversals.js";
import { applySwitch, balanceOf, creditedDowngrade, DAY, months, monthStart, PLUS, PRO, type Sub } from "../helpers/annual.js";

/**
 * Red team round 3 (commit 3ac56fb), RT3-3: a dispute of the annual invoice binds its share's
 * budget to 0; the months after it grant nothing, and the annual share counts each month's full
 * monthly as `withheld`, although the credited downgrade's negative share would have taken most of
 * it (the month amount is clamped at 0, so that take is never counted anywhere). When the dispute
 * is won, the give-back returns the annual share's gross withheld months: more than those months
 * would ever have granted. A won dispute must leave the ledger where it would be without it.
 */
captureLogs();
const fx = useBillingFixture();

const AT = monthStart(3) + 15 * DAY; // 16 April: pro -> plus in the portal, credited

async function downgraded(): Promise<Sub> {
  const sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 120_000 });
  expect(await months(fx, sub.userId, 1, 3, T0)).toEqual([PRO, PRO, PRO]);
  const down = creditedDowngrade(sub, AT, { credit: 34_000, fullPrice: 13_200 });
  expect(await applySwitch(fx, sub, down, AT)).toBe("downgrade_credit_recorded");
  expect(await months(fx, sub.userId, 4, 5, T0)).toEqual([PLUS, PLUS]);
  return sub;
}

describe("red team 3: a won dispute after a credited downgrade", () => {
  it("RT3-3: dispute of the annual invoice, then won: the year ends where it would have without the dispute", async () => {
    // baseline: no dispute
    const base = await downgraded();
    await months(fx, base.userId, 6, 11, T0);
    const expected = await balanceOf(fx, base.userId);
    expect(expected).toBe(10_000 + 4 * PRO - 30_000 + 8 * PLUS); // signup, months 0..3 at pro, half April back, months 4..11 at plus

    const sub = await downgraded();
    const paymentIntent = uniqueStripeId("pi");
    fx.stripe.invoicePayments.set(paymentIntent, sub.invoiceId);
    const ids = { chargeId: uniqueStripeId("ch"), paymentIntent, disputeId: uniqueStripeId("dp"), amount: 120_000 };
    fx.clock.value = (monthStart(5) + DAY) * 1000;
    expect((await fx.deliver(disputeCreated({ ...ids, created: monthStart(5) + DAY }))).json.outcome).toBe("clawed_back");
    // the disputed payment grants nothing meanwhile; the credit still takes its difference (linear)
    expect(await months(fx, sub.userId, 6, 7, T0)).toEqual([PLUS - PRO, PLUS - PRO]);
    fx.clock.value = (monthStart(7) + 4 * DAY) * 1000;
    expect((await fx.deliver(disputeClosed({ ...ids, status: "won", created: monthStart(7) + 4 * DAY }))).json.outcome).toBe("reinstated");
    expect(await months(fx, sub.userId, 8, 11, T0)).toEqual([PLUS, PLUS, PLUS, PLUS]);
    // on 3ac56fb: 820,000 — the give-back returns July and August at pro (2 x 100,000) where they were paid at plus
    expect(await balanceOf(fx, sub.userId)).toBe(expected);
  });
});
