import { extraAnnualSubscription } from "../helpers/annual.js";
import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { yearOf } from "../../lib/ledger/paid-year.js";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject, } from "../helpers/stripe-events.js";
import { balanceOf, DAY, months, PLUS, PRO, type Sub, YEAR } from "../helpers/annual.js";

/**
 * Red team round 10, RT10-1: the cancellation of an EXTRA annual subscription B whose own annual
 * invoice has not been applied yet ends the CURRENT subscription A's paid year, when B's period
 * starts within 5 s of A's. Rule (c) of `annualYearLeft` (previous known: B's extra state) ends
 * "`next`'s own period" by anchor only; `endAnnualYear` → `endYear` finds the year through
 * `yearOf`'s 5-second tolerance without asking whose year it is. B's year is not recorded yet (its
 * invoice.paid is being retried by Stripe), so the nearest year is A's: A's year is ended after
 * month 0, and A (live, paid for the whole year) never gets months 1..11. RT9-2 fixed the same
 * tolerance for `recordPayment`, and the unknown-subscription branch of rule (c) asks
 * `yearOf(...)?.subscription === next.id`, but the extra branch does not.
 *
 * Sequence: pro annual A (100,000 a month) from 1 January 12:00:00 (current); a second live
 * subscription B, plus annual (40,000 a month), created at 12:00:03 (recorded extra); B canceled
 * at once the next day (a duplicate, refunded by support); B's invoice.paid (month 0, 40,000) is
 * delivered BEFORE or AFTER B's deletion (Stripe retrying it); the sweep runs A's months 1..11.
 * Expected (by the documented rules, either order): A's months 0..11 (1,200,000) + B's month 0
 * (40,000) + signup 10,000 = 1,250,000, A's year not ended. With B from 12:00:06 that is what
 * both orders give. Observed with 12:00:03 and B's invoice after its deletion: A's year
 * endedAfter 0, months 1..11 refused: 150,000.
 */
captureLogs();
const fx = useBillingFixture();

async function run(offsetSeconds: number, invoiceFirst: boolean) {
  const a: Sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 49_000 });
  const bStart = T0 + offsetSeconds;
  const { id: bId, paid } = await extraAnnualSubscription(fx, a, bStart);
  const canceled = subscriptionObject({
    id: bId,
    customer: a.customer,
    price: "price_plus_yearly",
    userId: a.userId,
    status: "canceled",
    periodStart: bStart,
    periodEnd: bStart + YEAR,
  });
  const deleted = stripeEvent("customer.subscription.deleted", { created: T0 + DAY, object: canceled });
  if (invoiceFirst) expect((await fx.deliver(paid)).json.outcome).toBe("allowance_granted");
  fx.stripe.subscriptions.set(bId, canceled);
  fx.clock.value = (T0 + DAY + 5) * 1000;
  expect((await fx.deliver(deleted)).status).toBe(200);
  if (!invoiceFirst) expect((await fx.deliver(paid)).json.outcome).toBe("allowance_granted");
  await months(fx, a.userId, 1, 11);
  const account = await fx.deps.ledger.store.getAccount(a.userId);
  expect((await auditAccount(fx.deps.ledger, a.userId)).problems).toEqual([]);
  return {
    balance: await balanceOf(fx, a.userId),
    aYearEnd: account?.paidYears?.find((year) => year.anchor === T0 * 1000)?.endedAfter,
    bYearEnd: yearOf(account?.paidYears, bStart * 1000)?.subscription === bId ? yearOf(account?.paidYears, bStart * 1000)?.endedAfter : "not B's",
  };
}

describe("red team 10: an extra subscription's cancellation ends the current subscription's year", () => {
  const expected = { balance: 10_000 + 12 * PRO + PLUS, aYearEnd: undefined };
  it("control: B from 12:00:06, its invoice before or after its deletion", async () => {
    expect(await run(6, true)).toMatchObject(expected);
    expect(await run(6, false)).toMatchObject(expected);
  });
  it("RT10-1: B from 12:00:03, its invoice.paid before its deletion", async () => {
    expect(await run(3, true)).toMatchObject(expected);
  });
  it("RT10-1: B from 12:00:03, its invoice.paid after its deletion (Stripe retrying it)", async () => {
    expect(await run(3, false)).toMatchObject(expected); // observed: A's year endedAfter 0, 150,000
  });
});
