import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject } from "../helpers/stripe-events.js";
import { annualToMonthly, balanceOf, DAY, months, monthStart, PRO, type Sub, YEAR } from "../helpers/annual.js";

/**
 * Red team round 6 (commit 169fdfd), RT6-2: the month in progress at a year's end "stays"
 * (docs/billing.md, "A year left early") only if the schedule happened to grant it before the end
 * was applied. The end is recorded as `endedAfter` = the month in progress, but when the end's
 * event is applied before the sweep (or a lazy authorize) reached that month — a cancellation or
 * a switch early in a month, a sweep a few minutes behind or down for an hour — the account leaves
 * the annual schedule (free, or monthly) and nothing ever grants month `endedAfter`: neither
 * `endAnnualYear` (lib/ledger/year-end.ts, it only undoes months after the end) nor the schedule.
 * Delivered two days later, after the sweep granted it, the same month is kept. The ledger
 * depends on whether the sweep or the webhook came first.
 *
 * Sequence: pro annual (100,000 a month) from 1 January; months 1..3 granted; month 4 starts on
 * 1 May 12:00; the subscription is canceled at once on 1 May 12:10 (month 4 in progress); the
 * sweep reaches the account at 13:00.
 *  - the deletion delivered on time (12:10:05, before the sweep): month 4 is never granted:
 *    10,000 + 4 × 100,000 = 410,000 observed.
 *  - the deletion delivered on 3 May (the sweep granted month 4 at 13:00): month 4 stays: 510,000.
 * Expected by arithmetic (the year grants months 0..e, e the month in progress at the end — the
 * closed form of test/integration/annual-year-end-properties.test.ts): 510,000 in both orders.
 * Variant b: a portal switch to pro monthly at 1 May 12:10: 410,000 + 100,000 on time, 510,000 +
 * 100,000 late (the year's month 4 and the monthly invoice).
 */
captureLogs();
const fx = useBillingFixture();

const ENDED_AT = monthStart(4) + 600; // 1 May 12:10 UTC: month 4 of the year, 10 minutes in

async function run(kind: "cancel" | "switch", late: boolean) {
  const sub: Sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 120_000 });
  expect(await months(fx, sub.userId, 1, 3)).toEqual([PRO, PRO, PRO]);
  const canceled = subscriptionObject({
    id: sub.subscriptionId,
    customer: sub.customer,
    price: "price_pro_yearly",
    userId: sub.userId,
    status: "canceled",
    periodStart: T0,
    periodEnd: T0 + YEAR,
  });
  const sw = annualToMonthly(sub, ENDED_AT, 80_000);
  const deliverEnd = async (at: number) => {
    fx.clock.value = at * 1000;
    if (kind === "cancel") {
      fx.stripe.subscriptions.set(sub.subscriptionId, canceled);
      expect((await fx.deliver(stripeEvent("customer.subscription.deleted", { created: ENDED_AT, object: canceled }))).status).toBe(200);
    } else {
      fx.stripe.subscriptions.set(sub.subscriptionId, sw.switched);
      expect((await fx.deliver(sw.updated)).status).toBe(200);
      expect((await fx.deliver(sw.paid)).json.outcome).toBe("allowance_granted");
    }
  };
  if (!late) await deliverEnd(ENDED_AT + 5);
  await months(fx, sub.userId, 4, 4); // the sweep at 13:00
  if (late) await deliverEnd(monthStart(4) + 2 * DAY);
  expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  return balanceOf(fx, sub.userId);
}

describe("red team 6: a year ended early in a month the schedule had not granted yet", () => {
  it("RT6-2a: an immediate cancellation keeps the month in progress whether the sweep or the webhook comes first", async () => {
    const late = await run("cancel", true);
    expect(late).toBe(10_000 + 5 * PRO); // 510,000: months 0..4
    expect(await run("cancel", false)).toBe(late); // observed: 410,000 (month 4 never granted)
  });

  it("RT6-2b: a switch to monthly keeps the month in progress whether the sweep or the webhook comes first", async () => {
    const late = await run("switch", true);
    expect(late).toBe(10_000 + 5 * PRO + PRO); // months 0..4 of the year, the monthly invoice
    expect(await run("switch", false)).toBe(late); // observed: 510,000
  });
});
