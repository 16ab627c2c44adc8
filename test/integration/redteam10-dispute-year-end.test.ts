import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { uniqueStripeId } from "../helpers/stripe-events.js";
import { disputeClosed, disputeCreated } from "../helpers/stripe-reversals.js";
import { applySwitch, balanceOf, DAY, months, monthStart, PRO, portalSwitch, YEAR } from "../helpers/annual.js";

/**
 * Red team round 10 (held up): a dispute of the annual invoice opened at month 2, the year left
 * at month 4 (switch to monthly), the dispute closed won or lost before or after the end.
 * Won: 10,000 + months 0..4 (500,000) + the monthly invoice (100,000) = 610,000; lost: 110,000.
 */
captureLogs();
const fx = useBillingFixture();
const SWITCH_AT = monthStart(4) + 14 * DAY;

async function run(outcome: "won" | "lost", closedAfterEnd: boolean) {
  const sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 49_000 });
  const paymentIntent = uniqueStripeId("pi");
  fx.stripe.invoicePayments.set(paymentIntent, sub.invoiceId);
  const dispute = { disputeId: uniqueStripeId("dp"), chargeId: uniqueStripeId("ch"), paymentIntent, amount: 49_000 };
  await months(fx, sub.userId, 1, 2);
  fx.clock.value = (monthStart(2) + 3 * DAY) * 1000;
  expect((await fx.deliver(disputeCreated({ ...dispute, created: monthStart(2) + 3 * DAY }))).status).toBe(200);
  await months(fx, sub.userId, 3, 3);
  const close = async (at: number) => {
    fx.clock.value = at * 1000;
    expect((await fx.deliver(disputeClosed({ ...dispute, status: outcome, created: at }))).status).toBe(200);
  };
  if (!closedAfterEnd) await close(monthStart(3) + 3 * DAY);
  await months(fx, sub.userId, 4, 4);
  const sw = portalSwitch(sub, { at: SWITCH_AT, price: "price_pro_monthly", periodEnd: SWITCH_AT + 31 * DAY, oldPrice: "price_pro_yearly", credit: 30_000, fullPrice: 4_900, creditPeriodEnd: T0 + YEAR });
  expect(await applySwitch(fx, sub, sw, SWITCH_AT)).toBe("allowance_granted");
  if (closedAfterEnd) await close(monthStart(5) + 3 * DAY);
  await months(fx, sub.userId, 5, 6);
  expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  return balanceOf(fx, sub.userId);
}

describe("red team 10: a dispute and the year's end", () => {
  it("won before or after the end: everything back", async () => {
    expect(await run("won", false)).toBe(10_000 + 5 * PRO + PRO);
    expect(await run("won", true)).toBe(10_000 + 5 * PRO + PRO);
  });
  it("lost before or after the end: the year nets nothing", async () => {
    expect(await run("lost", false)).toBe(10_000 + PRO);
    expect(await run("lost", true)).toBe(10_000 + PRO);
  });
});
