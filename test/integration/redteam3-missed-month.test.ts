import { describe, expect, it } from "vitest";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { balanceOf, months, PLUS } from "../helpers/annual.js";

/**
 * Red team round 3 (commit 3ac56fb), RT3-5 (low: needs the sweep and the user's own authorize
 * calls to miss a whole calendar month): `grantAllowanceIfDue` → `dueAllowance` grants only the
 * month due now ("missed periods are not back-filled", the free plan's rule), so a paid annual
 * month the schedule never reached in its month is passed over for good — though its year's
 * payment paid for it and the share still counts it as not granted.
 */
captureLogs();
const fx = useBillingFixture();

describe("red team 3: an annual month the schedule did not reach in time", () => {
  it("RT3-5: a paid annual year grants all its months 1..11, even when one month's grant ran late", async () => {
    const sub = await subscribeAndPay(fx, { plan: "plus", interval: "year", amountPaid: 48_000 });
    const start = await balanceOf(fx, sub.userId);
    expect(await months(fx, sub.userId, 1, 1, T0)).toEqual([PLUS]);
    // no grant ran during February (sweep outage, user away); the next one runs on 1 March
    await months(fx, sub.userId, 3, 11, T0);
    expect((await balanceOf(fx, sub.userId)) - start).toBe(11 * PLUS); // on 3ac56fb: 10 x PLUS (February's paid month lost)
  });
});
