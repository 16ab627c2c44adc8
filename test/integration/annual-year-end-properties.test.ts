import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { chargeRefunded, stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";
import { refundEvent } from "../helpers/stripe-reversals.js";
import { annualCancellation, balanceOf, DAY, months, monthStart, PRO, portalSwitch, YEAR } from "../helpers/annual.js";

/**
 * An annual year ended early (an immediate cancellation, or a portal switch to monthly whose
 * invoice buys that month's allowance), with a refund of its invoice, at random points of the year and
 * in random delivery orders (fast-check over DynamoDB Local): the cancellation's event on time or
 * after the next month boundary (the sweep having granted that month from the ended year), the
 * refund before or after it, optionally failing afterwards. Whatever the order, the ledger ends
 * where an independent closed form of the documented rules puts it (docs/billing.md):
 *   the year grants months 0..e (e: the month in progress at the cancellation), G = (e + 1) × 100,000;
 *   the refund holds back R = round(1,200,000 × refunded ÷ paid), at most G, once the year is over;
 *   a refund that failed holds back nothing; a switch's monthly invoice grants 100,000.
 *   balance = 10,000 (signup) + G − (refund failed ? 0 : min(R, G)) + (switch ? 100,000 : 0).
 * Fails on 3a4cd73 (no year end): a late cancellation keeps the month after it, and a refund
 * applied before the end never takes what its budget was to hold back from the months it lost.
 */
captureLogs();
const fx = useBillingFixture();

const PAID = 120_000; // cents: pro annual

interface Scenario {
  /** how the year ends: an immediate cancellation, or a portal switch to pro monthly (its invoice paid) */
  end: "cancel" | "switch";
  /** the month in progress at the end (1..9) */
  endMonth: number;
  /** the month the refund is made in (1..10), cents refunded, and whether it fails later */
  refundMonth: number;
  refundedCents: number;
  refundFails: boolean;
}

interface Order {
  deletionLate: boolean;
  refundLast: boolean;
}

async function run(scenario: Scenario, order: Order): Promise<number> {
  const sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: PAID });
  const charge = { chargeId: uniqueStripeId("ch"), paymentIntent: uniqueStripeId("pi"), refundId: uniqueStripeId("re") };
  fx.stripe.invoicePayments.set(charge.paymentIntent, sub.invoiceId);
  const refundedAt = monthStart(scenario.refundMonth) + 10 * DAY; // in month `refundMonth`
  const canceledAt = monthStart(scenario.endMonth) + 20 * DAY; // later in month `endMonth`
  const cancellation = annualCancellation(fx, sub, canceledAt);
  const deliverRefund = async (at: number) => {
    fx.clock.value = at * 1000;
    const refunded = chargeRefunded({ ...charge, customer: sub.customer, amount: PAID, refunded: scenario.refundedCents, created: refundedAt });
    expect((await fx.deliver(refunded)).status).toBe(200);
  };
  const toMonthly = portalSwitch(sub, {
    at: canceledAt,
    price: "price_pro_monthly",
    periodEnd: canceledAt + 31 * DAY,
    oldPrice: "price_pro_yearly",
    credit: 30_000,
    fullPrice: 4_900,
    creditPeriodEnd: T0 + YEAR,
  });
  const deliverDeletion = async (at: number) => {
    fx.clock.value = at * 1000;
    if (scenario.end === "switch") {
      fx.stripe.subscriptions.set(sub.subscriptionId, toMonthly.switched);
      expect((await fx.deliver(toMonthly.updated)).status).toBe(200);
      expect((await fx.deliver(toMonthly.paid)).json.outcome).toBe("allowance_granted");
      return;
    }
    await cancellation.deliver(at);
  };
  let refundDelivered = false;
  // the sweep at every month boundary until the cancellation; the refund when it happens
  for (let month = 1; month <= scenario.endMonth; month++) {
    await months(fx, sub.userId, month, month);
    if (!order.refundLast && scenario.refundMonth === month) {
      await deliverRefund(refundedAt + 5);
      refundDelivered = true;
    }
  }
  if (order.deletionLate) {
    await months(fx, sub.userId, scenario.endMonth + 1, scenario.endMonth + 1); // granted from the year Stripe ended
    await deliverDeletion(monthStart(scenario.endMonth + 1) + 2 * DAY);
  } else {
    await deliverDeletion(canceledAt + 5); // (no sweep after it: the free plan's own periods are not under test)
  }
  if (!refundDelivered) await deliverRefund(Math.max(refundedAt, monthStart(scenario.endMonth + 1) + 3 * DAY) + 5);
  if (scenario.refundFails) {
    const failedAt = monthStart(Math.max(scenario.refundMonth, scenario.endMonth) + 1) + 4 * DAY;
    fx.clock.value = (failedAt + 5) * 1000;
    const failed = refundEvent("refund.failed", { ...charge, amount: scenario.refundedCents, refundCreated: refundedAt, created: failedAt });
    expect((await fx.deliver(failed)).status).toBe(200);
  }
  expect(await fx.deps.ledger.store.getAccount(sub.userId)).toMatchObject(scenario.end === "switch" ? { plan: "pro", interval: "month" } : { plan: "free" });
  expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  return balanceOf(fx, sub.userId);
}

function expected(scenario: Scenario): number {
  const granted = (scenario.endMonth + 1) * PRO;
  const returned = scenario.refundFails ? 0 : Math.round((12 * PRO * scenario.refundedCents) / PAID);
  const monthlyInvoice = scenario.end === "switch" ? PRO : 0;
  return 10_000 + granted - Math.min(returned, granted) + monthlyInvoice;
}

describe("an annual year ended early with a refund, in any delivery order (fast-check)", () => {
  it("ends at the closed form of the rules whether the cancellation and the refund arrive on time, late or reversed", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          end: fc.constantFrom("cancel" as const, "switch" as const),
          endMonth: fc.integer({ min: 1, max: 9 }),
          refundMonth: fc.integer({ min: 1, max: 10 }),
          refundedCents: fc.constantFrom(30_000, 60_000, 90_000, 120_000, 7_777),
          refundFails: fc.boolean(),
        }),
        fc.record({ deletionLate: fc.boolean(), refundLast: fc.boolean() }),
        async (scenario, order) => {
          expect(await run(scenario, order)).toBe(expected(scenario));
        },
      ),
      { numRuns: 40, seed: 20261203 },
    );
  }, 240_000);
});
