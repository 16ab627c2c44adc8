import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { yearOf } from "../../lib/ledger/paid-year.js";
import { customerOf, invoicePaid, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { uniqueUser } from "../helpers/ledger.js";
import { stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";
import { balanceOf, months, refundInvoice, YEAR } from "../helpers/annual.js";

/**
 * An annual subscription canceled in its first month, its events out of order: the deletion
 * (first heard: its `created` never applied) before its first invoice's `invoice.paid`. The
 * deletion, first heard, ends only a year recorded as the subscription's own, and the payment had
 * not recorded it yet, so the year stayed open on a canceled subscription, unlike the same events
 * in the other order (found by the heavy faults storm: one run had the 0-credit `year-end` entry,
 * the other not). The payment now ends the year its deletion left, so both orders end alike, also
 * through a later refund of the payment and the months after (the balances agreed before too: the
 * year stayed open, but the account was on the free plan, whose schedule never reads it).
 */
captureLogs();
const fx = useBillingFixture();
const CANCELED_AT = T0 + 10 * 86_400;

async function run(deletedFirst: boolean) {
  fx.clock.value = T0 * 1000;
  const userId = uniqueUser("deleted-first");
  const customer = await customerOf(fx, userId);
  const id = uniqueStripeId("sub");
  const invoiceId = uniqueStripeId("in");
  const canceled = subscriptionObject({ id, customer, price: "price_pro_yearly", userId, status: "canceled", periodStart: T0, periodEnd: T0 + YEAR, latestInvoice: invoiceId });
  fx.stripe.subscriptions.set(id, canceled);
  const paid = invoicePaid({ invoiceId, customer, subscriptionId: id, userId, price: "price_pro_yearly", amountPaid: 49_000, created: T0 + 1, linePeriod: { start: T0, end: T0 + YEAR } });
  const deleted = stripeEvent("customer.subscription.deleted", { created: CANCELED_AT, object: canceled });
  fx.clock.value = (CANCELED_AT + 5) * 1000;
  for (const event of deletedFirst ? [deleted, paid] : [paid, deleted]) expect((await fx.deliver(event)).status).toBe(200);
  const account = await fx.deps.ledger.store.getAccount(userId);
  const year = yearOf(account?.paidYears, T0 * 1000);
  const entries = async () => (await fx.deps.ledger.store.allEntries(userId)).map((entry) => `${entry.key.replace(invoiceId, "INVOICE").replace(/^refund#ch_[^#]+#/, "refund#CHARGE#")} ${entry.amount}`).sort();
  const atCancel = { balance: await balanceOf(fx, userId), entries: await entries(), endedAfter: year?.endedAfter };
  const refunded = await refundInvoice(fx, customer, invoiceId, 49_000, 49_000, CANCELED_AT + 86_400);
  const later = await months(fx, userId, 1, 3);
  expect((await auditAccount(fx.deps.ledger, userId)).problems).toEqual([]);
  return { atCancel, refunded, later, balance: await balanceOf(fx, userId), entries: await entries() };
}

describe("an annual subscription's deletion heard before its first invoice.paid", () => {
  it("ends as the same events in the other order: the year ended after month 0, the same entries, the same refund", async () => {
    const paidFirst = await run(false);
    expect(paidFirst.atCancel.endedAfter).toBe(0);
    expect(paidFirst.atCancel.entries).toContain("year-end#2026-01-01T12:00:00.000Z#0 0");
    expect(await run(true)).toEqual(paidFirst);
  });
});
