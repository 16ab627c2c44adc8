import { expect } from "vitest";
import { getBalance, grantAllowanceIfDue } from "../../lib/ledger/index.js";
import { type BillingFixture, invoicePaid, type subscribeAndPay, T0 } from "./billing.js";
import { chargeRefunded, stripeEvent, subscriptionObject, uniqueStripeId } from "./stripe-events.js";

/**
 * Annual-plan scenarios (test/integration/annual-paid-months, redteam-annual, redteam2-*): plus is
 * 40,000 credits a month, pro 100,000; the year starts at T0 = 2026-01-01 12:00 UTC.
 */
export const PLUS = 40_000;
export const PRO = 100_000;
export const DAY = 86_400;
export const YEAR = 365 * DAY;
export const monthStart = (m: number) => Date.UTC(2026, m, 1, 12) / 1000;

export type Sub = Awaited<ReturnType<typeof subscribeAndPay>>;

export const balanceOf = async (fx: BillingFixture, userId: string) => (await getBalance(fx.deps.ledger, userId)).balance;

/** Walks the schedule through months `from`..`to` of the year starting at `yearStart` (seconds). */
export async function months(fx: BillingFixture, userId: string, from: number, to: number, yearStart = T0): Promise<number[]> {
  const amounts: number[] = [];
  for (let month = from; month <= to; month++) {
    const d = new Date(yearStart * 1000);
    fx.clock.value = (Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + month, d.getUTCDate(), d.getUTCHours()) / 1000 + 3_600) * 1000;
    const result = await grantAllowanceIfDue(fx.deps.ledger, userId);
    amounts.push(result.granted ? result.entry.amount : 0);
  }
  return amounts;
}

/** A refund of `refunded` cents of the payment behind invoice `invoiceId` (paid `amount`), at `at` (seconds). */
export async function refundInvoice(fx: BillingFixture, customer: string, invoiceId: string, amount: number, refunded: number, at: number) {
  const paymentIntent = uniqueStripeId("pi");
  fx.stripe.invoicePayments.set(paymentIntent, invoiceId);
  fx.clock.value = at * 1000;
  const answer = await fx.deliver(chargeRefunded({ chargeId: uniqueStripeId("ch"), paymentIntent, customer, amount, refunded, created: at }));
  expect(answer.status).toBe(200);
  return answer.json.outcome as string;
}

/** A switch made in the Stripe portal: the subscription on its new price and period, and its paid proration invoice. */
export function portalSwitch(
  sub: Sub,
  input: {
    at: number;
    price: string;
    periodStart?: number;
    periodEnd: number;
    oldPrice: string;
    credit: number;
    fullPrice: number;
    prorationOnly?: boolean;
    amountPaid?: number;
    /** where the credited old price's period ends (default: `periodEnd`; a switch of interval credits the old, shorter period) */
    creditPeriodEnd?: number;
  },
) {
  const invoiceId = uniqueStripeId("in");
  const switched = subscriptionObject({
    id: sub.subscriptionId,
    customer: sub.customer,
    price: input.price,
    userId: sub.userId,
    periodStart: input.periodStart ?? input.at,
    periodEnd: input.periodEnd,
    latestInvoice: invoiceId,
  });
  const updated = stripeEvent("customer.subscription.updated", { created: input.at, object: switched });
  const paid = invoicePaid({
    invoiceId,
    customer: sub.customer,
    subscriptionId: sub.subscriptionId,
    userId: sub.userId,
    price: input.price,
    billingReason: "subscription_update",
    created: input.at + 1,
    amountPaid: input.amountPaid ?? Math.max(0, input.fullPrice - input.credit),
    lines: [
      { price: input.price, proration: input.prorationOnly ?? false, amount: input.fullPrice, period: { start: input.at, end: input.periodEnd } },
      { price: input.oldPrice, proration: true, amount: -input.credit, period: { start: input.at, end: input.creditPeriodEnd ?? input.periodEnd } },
    ],
  });
  return { invoiceId, switched, updated, paid };
}

/**
 * A portal switch that keeps the current period (started at T0; a year long unless `periodEnd` says
 * otherwise): Stripe invoices only the proration.
 */
export function prorationSwitch(
  sub: Sub,
  input: Omit<Parameters<typeof portalSwitch>[1], "periodStart" | "periodEnd" | "prorationOnly"> & { periodEnd?: number },
) {
  return portalSwitch(sub, { periodStart: T0, periodEnd: T0 + YEAR, prorationOnly: true, ...input });
}

/** Delivers a portal switch's subscription update (Stripe holds the switched subscription), at `at` + 5 s; its invoice.paid is not delivered. */
export async function applySwitchUpdate(fx: BillingFixture, sub: Sub, sw: ReturnType<typeof portalSwitch>, at: number) {
  fx.stripe.subscriptions.set(sub.subscriptionId, sw.switched);
  fx.clock.value = (at + 5) * 1000;
  expect((await fx.deliver(sw.updated)).status).toBe(200);
}

/** Delivers a portal switch: the subscription update, then its invoice.paid; returns the invoice's outcome. */
export async function applySwitch(fx: BillingFixture, sub: Sub, sw: ReturnType<typeof portalSwitch>, at: number) {
  await applySwitchUpdate(fx, sub, sw, at);
  const res = await fx.deliver(sw.paid);
  expect(res.status).toBe(200);
  return res.json.outcome as string;
}

/** change-plan through the route, at `at` (seconds). */
export function changePlanAt(fx: BillingFixture, userId: string, plan: string, at: number) {
  fx.clock.value = at * 1000;
  return fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/change-plan", { plan });
}

/** The renewal invoice.paid of an annual subscriber (`subscription_cycle`), its plan line starting at `start` (seconds). */
export function renewalPaid(sub: Sub, input: { invoiceId: string; start: number; amountPaid: number; price?: string; created?: number }) {
  return invoicePaid({
    invoiceId: input.invoiceId,
    customer: sub.customer,
    subscriptionId: sub.subscriptionId,
    userId: sub.userId,
    price: input.price ?? "price_pro_yearly",
    amountPaid: input.amountPaid,
    billingReason: "subscription_cycle",
    linePeriod: { start: input.start, end: input.start + YEAR },
    ...(input.created !== undefined ? { created: input.created } : {}),
  });
}

/**
 * Pro → plus within the annual year starting at T0, made in the Stripe portal with the unused pro
 * time credited back (a proration-only invoice paying nothing): the credited downgrade the annual
 * red-team sequences start from. `credit` and `fullPrice` are the invoice's two lines (cents).
 */
export function creditedDowngrade(sub: Sub, at: number, amounts: { credit: number; fullPrice: number }) {
  return prorationSwitch(sub, { at, price: "price_plus_yearly", oldPrice: "price_pro_yearly", ...amounts, amountPaid: 0 });
}

/**
 * An immediate cancellation of the pro annual subscription `sub` (its year from `yearStart`) made
 * at `canceledAt` (seconds): the canceled subscription, and `deliver(at)`, which makes Stripe hold
 * it and delivers its customer.subscription.deleted at `at` (seconds), expecting a 200.
 */
export function annualCancellation(fx: BillingFixture, sub: Sub, canceledAt: number, yearStart = T0) {
  const canceled = subscriptionObject({
    id: sub.subscriptionId,
    customer: sub.customer,
    price: "price_pro_yearly",
    userId: sub.userId,
    status: "canceled",
    periodStart: yearStart,
    periodEnd: yearStart + YEAR,
  });
  const deleted = stripeEvent("customer.subscription.deleted", { created: canceledAt, object: canceled });
  return {
    canceled,
    async deliver(at: number) {
      fx.stripe.subscriptions.set(sub.subscriptionId, canceled);
      fx.clock.value = at * 1000;
      const answer = await fx.deliver(deleted);
      expect(answer.status).toBe(200);
      return answer;
    },
  };
}

/**
 * A second live plus annual subscription of `sub`'s user from `start` (seconds), reported and
 * recorded as an extra one (its customer.subscription.created delivered at `start` + 5 s): its
 * id, object and a paid annual invoice (`paid`, not delivered).
 */
export async function extraAnnualSubscription(fx: BillingFixture, sub: Sub, start: number) {
  const id = uniqueStripeId("sub");
  const invoiceId = uniqueStripeId("in");
  const object = subscriptionObject({
    id,
    customer: sub.customer,
    price: "price_plus_yearly",
    userId: sub.userId,
    periodStart: start,
    periodEnd: start + YEAR,
    latestInvoice: invoiceId,
  });
  fx.stripe.subscriptions.set(id, object);
  fx.clock.value = (start + 5) * 1000;
  expect((await fx.deliver(stripeEvent("customer.subscription.created", { created: start, object }))).json.outcome).toBe(
    "subscription_second_live_subscription",
  );
  const paid = invoicePaid({
    invoiceId,
    customer: sub.customer,
    subscriptionId: id,
    userId: sub.userId,
    price: "price_plus_yearly",
    amountPaid: 19_000,
    created: start + 1,
    linePeriod: { start, end: start + YEAR },
  });
  return { id, invoiceId, object, paid };
}

/** A portal switch of a pro annual subscription (its year from T0) to pro monthly at `at` (seconds), the unused year credited back. */
export const annualToMonthly = (sub: Sub, at: number, credit = 32_000) =>
  portalSwitch(sub, { at, price: "price_pro_monthly", periodEnd: at + 31 * DAY, oldPrice: "price_pro_yearly", credit, fullPrice: 4_900, creditPeriodEnd: T0 + YEAR });

/** A portal switch from pro monthly (its period from `monthlyFrom`) back to a new pro annual period at `at` (seconds). */
export const monthlyToAnnual = (sub: Sub, at: number, monthlyFrom: number, credit = 4_500) =>
  portalSwitch(sub, { at, price: "price_pro_yearly", periodEnd: at + YEAR, oldPrice: "price_pro_monthly", credit, fullPrice: 49_000, creditPeriodEnd: monthlyFrom + 31 * DAY });
