import { describe, expect, it } from "vitest";
import { auditAccount, grantAllowanceIfDue } from "../../lib/ledger/index.js";
import { customerOf, invoicePaid, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { uniqueUser } from "../helpers/ledger.js";
import { stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";
import { balanceOf, DAY, months, PLUS, PRO, YEAR } from "../helpers/annual.js";

/**
 * Red team round 10, RT10-2 (same root cause as RT10-1, the current subscription's branch, and the
 * schedule then re-anchored onto an ENDED year): the current annual subscription A is canceled at
 * once while its own annual invoice has not been applied yet (Stripe retrying it); rule (c) of
 * `annualYearLeft` ends "A's period" by anchor, and `endYear` finds, through `yearOf`'s 5-second
 * tolerance, the paid year of the extra subscription B (started 3 s after A). B is promoted in the
 * same event: the schedule is re-anchored at B's period start, onto B's year — recorded ended
 * after month 0. B is live and paid for its whole year; months 1..11 are refused (passed over).
 *
 * Sequence: a user with a Stripe customer; A pro annual (100,000) from 1 January 12:00:00 created
 * (current), B plus annual (40,000) from 12:00:03 created (second live: extra), B's invoice.paid
 * (month 0: 40,000, share 11 x 40,000) on time; A canceled at once the next day (a duplicate); A's
 * invoice.paid (month 0: 100,000) delivered before or after A's deletion; the sweep walks B's year.
 * Expected (either order): 10,000 + A's month 0 (100,000; A's year ended after 0) + B's months
 * 0..11 (480,000) = 590,000, B's year not ended. With B from 12:00:06 both orders give that.
 * Observed with 12:00:03 and A's invoice after its deletion: B's year endedAfter 0, 150,000.
 */
captureLogs();
const fx = useBillingFixture();

async function run(offsetSeconds: number, aInvoiceFirst: boolean) {
  const userId = uniqueUser("rt10-2");
  const customer = await customerOf(fx, userId);
  const aId = uniqueStripeId("sub");
  const aInvoice = uniqueStripeId("in");
  const bStart = T0 + offsetSeconds;
  const bId = uniqueStripeId("sub");
  const bInvoice = uniqueStripeId("in");
  const subscription = (id: string, price: string, start: number, invoice: string, status = "active") =>
    subscriptionObject({ id, customer, price, userId, status, periodStart: start, periodEnd: start + YEAR, latestInvoice: invoice });
  const a = subscription(aId, "price_pro_yearly", T0, aInvoice);
  const b = subscription(bId, "price_plus_yearly", bStart, bInvoice);
  fx.stripe.subscriptions.set(aId, a);
  fx.stripe.subscriptions.set(bId, b);
  fx.clock.value = (bStart + 5) * 1000;
  expect((await fx.deliver(stripeEvent("customer.subscription.created", { created: T0, object: a }))).json.outcome).toBe("subscription_applied");
  expect((await fx.deliver(stripeEvent("customer.subscription.created", { created: bStart, object: b }))).json.outcome).toBe(
    "subscription_second_live_subscription",
  );
  const paidOf = (invoiceId: string, subscriptionId: string, price: string, start: number, amountPaid: number) =>
    invoicePaid({ invoiceId, customer, subscriptionId, userId, price, amountPaid, created: start + 1, linePeriod: { start, end: start + YEAR } });
  expect((await fx.deliver(paidOf(bInvoice, bId, "price_plus_yearly", bStart, 19_000))).json.outcome).toBe("allowance_granted");
  const aPaid = paidOf(aInvoice, aId, "price_pro_yearly", T0, 49_000);
  if (aInvoiceFirst) expect((await fx.deliver(aPaid)).json.outcome).toBe("allowance_granted");
  const canceled = subscription(aId, "price_pro_yearly", T0, aInvoice, "canceled");
  fx.stripe.subscriptions.set(aId, canceled);
  fx.clock.value = (T0 + DAY + 5) * 1000;
  expect((await fx.deliver(stripeEvent("customer.subscription.deleted", { created: T0 + DAY, object: canceled }))).json.outcome).toBe(
    "subscription_promoted",
  );
  if (!aInvoiceFirst) expect((await fx.deliver(aPaid)).json.outcome).toBe("allowance_granted");
  await months(fx, userId, 1, 11, bStart);
  fx.clock.value = (bStart + YEAR - DAY) * 1000;
  await grantAllowanceIfDue(fx.deps.ledger, userId);
  const account = await fx.deps.ledger.store.getAccount(userId);
  expect(account).toMatchObject({ plan: "plus", interval: "year", periodAnchor: bStart * 1000 });
  expect((await auditAccount(fx.deps.ledger, userId)).problems).toEqual([]);
  const bYear = account?.paidYears?.find((year) => year.subscription === bId);
  return { balance: await balanceOf(fx, userId), bYearEnd: bYear?.endedAfter };
}

describe("red team 10: the current subscription's cancellation ends the promoted extra's year", () => {
  const expected = { balance: 10_000 + PRO + 12 * PLUS, bYearEnd: undefined };
  it("control: B from 12:00:06, A's invoice before or after A's deletion", async () => {
    expect(await run(6, true)).toMatchObject(expected);
    expect(await run(6, false)).toMatchObject(expected);
  });
  it("RT10-2: B from 12:00:03, A's invoice.paid before A's deletion", async () => {
    expect(await run(3, true)).toMatchObject(expected);
  });
  it("RT10-2: B from 12:00:03, A's invoice.paid after A's deletion (Stripe retrying it)", async () => {
    expect(await run(3, false)).toMatchObject(expected); // observed: B's year endedAfter 0, months 1..11 refused
  });
});
