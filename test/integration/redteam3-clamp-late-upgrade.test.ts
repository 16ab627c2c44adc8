import { describe, expect, it } from "vitest";
import { paidInvoiceEvent, subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { applySwitch, balanceOf, changePlanAt, creditedDowngrade, DAY, months, monthStart, PLUS, PRO, type Sub } from "../helpers/annual.js";

/**
 * Red team round 3 (commit 3ac56fb), RT3-4 (same root cause as RT3-1, no refund involved): an
 * annual month's amount is clamped at 0, but the clamp is recorded nowhere. An upgrade whose
 * invoice is still open when a credited portal downgrade arrives leaves the months after it at
 * plus − (pro − plus) < 0 → 0; once the upgrade is paid, `monthsPassed` grants its share for those
 * months in full (+60,000 each), as if the downgrade's −60,000 had been taken from them. Paid on
 * time, the same months net plus (40,000); paid late they net 60,000.
 */
captureLogs();
const fx = useBillingFixture();

const UP_AT = monthStart(3) + 15 * DAY; // 16 April: change-plan plus -> pro
const DOWN_AT = monthStart(4) + 15 * DAY; // 16 May: pro -> plus in the portal, credited

async function run(upgradePaidLate: boolean): Promise<{ sub: Sub; delta: number }> {
  const sub = await subscribeAndPay(fx, { plan: "plus", interval: "year", amountPaid: 48_000 });
  expect(await months(fx, sub.userId, 1, 3, T0)).toEqual([PLUS, PLUS, PLUS]);
  const start = await balanceOf(fx, sub.userId);
  fx.stripe.prorationStatus = upgradePaidLate ? "open" : "paid";
  expect((await changePlanAt(fx, sub.userId, "pro", UP_AT)).json).toMatchObject({ status: "upgraded" });
  const upgrade = fx.stripe.subscriptions.get(sub.subscriptionId)?.latest_invoice as string;
  await months(fx, sub.userId, 4, 4, T0);
  const down = creditedDowngrade(sub, DOWN_AT, { credit: 25_000, fullPrice: 8_000 });
  expect(await applySwitch(fx, sub, down, DOWN_AT)).toBe("downgrade_credit_recorded");
  await months(fx, sub.userId, 5, 6, T0);
  if (upgradePaidLate) {
    fx.clock.value = (monthStart(6) + 9 * DAY) * 1000; // 10 July: the open upgrade invoice is paid
    expect((await fx.deliver(paidInvoiceEvent(fx, upgrade))).json.outcome).toBe("upgrade_topped_up");
  }
  await months(fx, sub.userId, 7, 11, T0);
  return { sub, delta: (await balanceOf(fx, sub.userId)) - start };
}

describe("red team 3: a clamped month paid for later", () => {
  it("RT3-4: an upgrade paid after a credited downgrade ends the year where it would have paid on time", async () => {
    const onTime = await run(false);
    const late = await run(true);
    // on time: April top-up 30,000, May at pro, May's last 16 of 31 days back (floor(60,000 x 16/31) = 30,967), June..December at plus
    expect(onTime.delta).toBe(30_000 + PRO - 30_967 + 7 * PLUS);
    expect(late.delta).toBe(onTime.delta); // on 3ac56fb: 40,000 more (June and July net 60,000 instead of 40,000)
  });
});
