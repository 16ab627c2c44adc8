import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { yearOf } from "../../lib/ledger/paid-year.js";
import { customerOf, invoicePaid, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { uniqueUser } from "../helpers/ledger.js";
import { stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";
import { annualToMonthly, balanceOf, DAY, monthStart, months, PRO, portalSwitch, refundInvoice, type Sub, YEAR } from "../helpers/annual.js";

/**
 * An annual subscription canceled in its first month, its events out of order: the deletion
 * (first heard: its `created` never applied) before its first invoice's `invoice.paid`. The
 * deletion, first heard, ends only a year recorded as the subscription's own, and the payment had
 * not recorded it yet, so the year stayed open on a canceled subscription, unlike the same events
 * in the other order (found by the heavy faults storm: one run had the 0-credit `year-end` entry,
 * the other not). The payment now ends the year by the subscription's known state, so the orders end alike, also
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

/**
 * The same rule when the subscription left the year by a portal switch before it was canceled
 * (an outside review of the first version, which ended the year at the cancellation whatever the
 * period it happened in: 200,000 credits for months already credited back): year 1 from T0, a
 * switch to a new annual period on 11 June (month 5), canceled on 16 August (month 2 of the new
 * year). Every order ends with year 1 ended after month 5 and the new year after month 2.
 */
describe("an annual year left by a switch, then canceled, its events in any order", () => {
  const SWITCHED_AT = monthStart(5) + 10 * DAY;
  const CANCELED = SWITCHED_AT + 66 * DAY;
  const orders = {
    inOrder: ["created", "paid1", "updated", "paidNew", "deleted"],
    paidFirst: ["paid1", "paidNew", "deleted", "updated"],
    deletedFirst: ["deleted", "updated", "paid1", "paidNew"],
    deletedFirstSwitchLast: ["deleted", "paid1", "paidNew", "updated"],
    switchNeverHeard: ["deleted", "paid1", "paidNew"],
    everythingTwice: ["deleted", "updated", "paid1", "paidNew", "created", "paid1"],
  } as const;

  async function run(order: readonly string[]) {
    fx.clock.value = T0 * 1000;
    const userId = uniqueUser("switch-deleted");
    const customer = await customerOf(fx, userId);
    const id = uniqueStripeId("sub");
    const invoiceId = uniqueStripeId("in");
    const year1 = subscriptionObject({ id, customer, price: "price_pro_yearly", userId, status: "active", periodStart: T0, periodEnd: T0 + YEAR, latestInvoice: invoiceId });
    const sub: Sub = { userId, customer, subscriptionId: id, invoiceId, subscription: year1 };
    const switched = portalSwitch(sub, { at: SWITCHED_AT, price: "price_pro_yearly", periodEnd: SWITCHED_AT + YEAR, oldPrice: "price_pro_yearly", credit: 28_000, fullPrice: 49_000, creditPeriodEnd: T0 + YEAR });
    const canceled = subscriptionObject({ id, customer, price: "price_pro_yearly", userId, status: "canceled", periodStart: SWITCHED_AT, periodEnd: SWITCHED_AT + YEAR, latestInvoice: switched.invoiceId });
    fx.stripe.subscriptions.set(id, canceled);
    const events: Record<string, unknown> = {
      created: stripeEvent("customer.subscription.created", { created: T0, object: year1 }),
      paid1: invoicePaid({ invoiceId, customer, subscriptionId: id, userId, price: "price_pro_yearly", amountPaid: 49_000, created: T0 + 1, linePeriod: { start: T0, end: T0 + YEAR } }),
      updated: switched.updated,
      paidNew: switched.paid,
      deleted: stripeEvent("customer.subscription.deleted", { created: CANCELED, object: canceled }),
    };
    fx.clock.value = (CANCELED + 5) * 1000;
    for (const name of order) expect((await fx.deliver(events[name] as Parameters<typeof fx.deliver>[0])).status).toBe(200);
    const account = await fx.deps.ledger.store.getAccount(userId);
    expect((await auditAccount(fx.deps.ledger, userId)).problems).toEqual([]);
    return { balance: await balanceOf(fx, userId), year1: yearOf(account?.paidYears, T0 * 1000)?.endedAfter, newYear: yearOf(account?.paidYears, SWITCHED_AT * 1000)?.endedAfter };
  }

  for (const [name, order] of Object.entries(orders)) {
    it(`${name}: year 1's months 0..5 and the new year's 0..2, nothing for the time credited back`, async () => {
      expect(await run(order)).toEqual({ balance: 10_000 + 6 * PRO + 3 * PRO, year1: 5, newYear: 2 });
    });
  }
});

/** Annual switched to monthly on 21 June, its last monthly period from 21 August, canceled 5 September. */
describe("an annual year switched to monthly, then canceled: the deletion before or after the year's payment", () => {
  const SWITCHED_AT = monthStart(5) + 20 * DAY;
  const LAST_PERIOD = SWITCHED_AT + 61 * DAY;
  const CANCELED = monthStart(8) + 4 * DAY;

  async function run(deletedFirst: boolean, switchLast: boolean) {
    fx.clock.value = T0 * 1000;
    const userId = uniqueUser("monthly-deleted");
    const customer = await customerOf(fx, userId);
    const id = uniqueStripeId("sub");
    const invoiceId = uniqueStripeId("in");
    const sub: Sub = { userId, customer, subscriptionId: id, invoiceId, subscription: undefined };
    const paid = invoicePaid({ invoiceId, customer, subscriptionId: id, userId, price: "price_pro_yearly", amountPaid: 49_000, created: T0 + 1, linePeriod: { start: T0, end: T0 + YEAR } });
    const switched = annualToMonthly(sub, SWITCHED_AT);
    const canceled = subscriptionObject({ id, customer, price: "price_pro_monthly", userId, status: "canceled", periodStart: LAST_PERIOD, periodEnd: LAST_PERIOD + 31 * DAY });
    fx.stripe.subscriptions.set(id, canceled);
    const deleted = stripeEvent("customer.subscription.deleted", { created: CANCELED, object: canceled });
    fx.clock.value = (CANCELED + 5) * 1000;
    for (const event of [...(deletedFirst ? [deleted, paid] : [paid, deleted]), ...(switchLast ? [switched.updated] : [])]) {
      expect((await fx.deliver(event)).status).toBe(200);
    }
    const account = await fx.deps.ledger.store.getAccount(userId);
    return { balance: await balanceOf(fx, userId), year1: yearOf(account?.paidYears, T0 * 1000)?.endedAfter };
  }

  it("ends alike either way (the switch heard later moves both to its month)", async () => {
    const paidFirst = await run(false, false);
    expect(paidFirst.year1).toBe(7); // the last period's start: all the cancellation's state says
    expect(await run(true, false)).toEqual(paidFirst);
    const paidFirstThenSwitch = await run(false, true);
    expect(paidFirstThenSwitch).toEqual({ balance: 10_000 + 6 * PRO, year1: 5 });
    expect(await run(true, true)).toEqual(paidFirstThenSwitch);
  });
});
