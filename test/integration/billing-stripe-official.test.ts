import { describe, expect, it } from "vitest";
import { type BillingAccount, HANDLED_EVENT_TYPES } from "../../lib/billing/index.js";
import { getBalance } from "../../lib/ledger/index.js";
import { customerOf, T0, useBillingFixture } from "../helpers/billing.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { uniqueStripeId } from "../helpers/stripe-events.js";
import {
  charge,
  checkoutSession,
  dispute,
  invoice,
  invoiceLine,
  officialEvent,
  olderApiInvoice,
  olderApiSubscription,
  refund,
  subscription,
  without,
} from "../helpers/stripe-official.js";

/**
 * Every event type billing handles, built from Stripe's own example object of its resource
 * (test/fixtures/stripe/fixtures3.json) with only the scenario's ids, customer, metadata, prices,
 * amounts and statuses replaced, is applied by the real webhook: its outcome is the business
 * outcome and the ledger shows it. Every account starts with the 10,000-credit signup bonus.
 */
captureLogs();
const fx = useBillingFixture();

const SIGNUP = 10_000;
const STARTER = 50_000;
const PRO_MONTH = 100_000;
const account = async (userId: string) => (await fx.deps.ledger.store.getAccount(userId)) as BillingAccount;
const balance = async (userId: string) => (await getBalance(fx.deps.ledger, userId)).balance;
const covered = new Set<string>();

/** Delivers an event; returns the webhook's outcome (a 200 is required). */
async function outcome(event: { type: string }) {
  covered.add(event.type);
  const answer = await fx.deliver(event);
  expect(answer.status).toBe(200);
  return answer.json.outcome as string;
}

/** A user who started a starter pack checkout through the API, and the official session of it, paid. */
async function packCheckout() {
  const userId = uniqueUser("official");
  const started = await fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/checkout", { pack: "starter" });
  expect(started.status).toBe(200);
  const stored = await account(userId);
  const customer = stored.stripeCustomerId as string;
  const paymentIntent = uniqueStripeId("pi");
  const session = (paymentStatus: "paid" | "unpaid", status: "complete" | "expired" = "complete") =>
    checkoutSession({
      id: stored.pendingPackCheckout?.sessionId as string,
      mode: "payment",
      customer,
      paymentStatus,
      status,
      paymentIntent,
      amountTotal: 1_000,
      metadata: { userId, pack: "starter" },
      clientReferenceId: userId,
    });
  return { userId, customer, paymentIntent, session };
}

/** A pack buyer whose pack was granted, and the official charge of it (1,000 cents). */
async function packBought() {
  const buyer = await packCheckout();
  expect(await outcome(officialEvent("checkout.session.completed", buyer.session("paid")))).toBe("pack_granted");
  const chargeId = uniqueStripeId("ch");
  return { ...buyer, chargeId };
}

/** A subscriber's ids and the official subscription + first invoice of pro monthly. */
async function proSubscriber() {
  const userId = uniqueUser("official");
  const customer = await customerOf(fx, userId);
  const subscriptionId = uniqueStripeId("sub");
  const invoiceId = uniqueStripeId("in");
  const sub = (status: string, overrides: { cancelAtPeriodEnd?: boolean } = {}) =>
    subscription({
      id: subscriptionId,
      customer,
      price: "price_pro_monthly",
      status,
      periodStart: T0,
      periodEnd: T0 + 31 * 86_400,
      metadata: { userId, plan: "pro", interval: "month" },
      latestInvoice: invoiceId,
      ...overrides,
    });
  const line = { price: "price_pro_monthly", proration: false, amount: 4_900, period: { start: T0, end: T0 + 31 * 86_400 }, subscription: subscriptionId };
  const firstInvoice = (status: "paid" | "open" = "paid") =>
    invoice({
      id: invoiceId,
      customer,
      subscription: subscriptionId,
      metadata: { userId },
      billingReason: "subscription_create",
      status,
      amountPaid: status === "paid" ? 4_900 : 0,
      amountDue: 4_900,
      lines: [invoiceLine(invoiceId, line)],
    });
  /** A paid plan change's invoice (subscription_update) whose one line is a proration. */
  const prorationInvoice = () =>
    invoice({
      customer,
      subscription: subscriptionId,
      metadata: { userId },
      billingReason: "subscription_update",
      status: "paid",
      amountPaid: 3_000,
      lines: [invoiceLine(invoiceId, { ...line, proration: true })],
    });
  return { userId, customer, subscriptionId, invoiceId, sub, line, firstInvoice, prorationInvoice };
}

describe("checkout sessions (official checkout.session)", () => {
  it("checkout.session.completed of a paid pack grants the pack", async () => {
    const buyer = await packCheckout();
    expect(await outcome(officialEvent("checkout.session.completed", buyer.session("paid")))).toBe("pack_granted");
    expect(await balance(buyer.userId)).toBe(SIGNUP + STARTER);
    expect((await account(buyer.userId)).pendingPackCheckout).toBeUndefined();
  });

  it("an unpaid completion awaits, and async_payment_succeeded then grants the pack", async () => {
    const buyer = await packCheckout();
    expect(await outcome(officialEvent("checkout.session.completed", buyer.session("unpaid")))).toBe("pack_awaiting_payment");
    expect(await balance(buyer.userId)).toBe(SIGNUP);
    expect(await outcome(officialEvent("checkout.session.async_payment_succeeded", buyer.session("paid")))).toBe("pack_granted");
    expect(await balance(buyer.userId)).toBe(SIGNUP + STARTER);
  });

  it("checkout.session.expired and async_payment_failed close the checkout and grant nothing", async () => {
    for (const type of ["checkout.session.expired", "checkout.session.async_payment_failed"]) {
      const buyer = await packCheckout();
      expect((await account(buyer.userId)).pendingPackCheckout).toBeDefined();
      const status = type === "checkout.session.expired" ? "expired" : "complete";
      expect(await outcome(officialEvent(type, buyer.session("unpaid", status)))).toBe("checkout_closed");
      expect((await account(buyer.userId)).pendingPackCheckout).toBeUndefined();
      expect(await balance(buyer.userId)).toBe(SIGNUP);
    }
  });

  it("checkout.session.completed of a subscription applies the official subscription Stripe holds", async () => {
    const sub = await proSubscriber();
    fx.stripe.subscriptions.set(sub.subscriptionId, sub.sub("active"));
    const session = checkoutSession({
      mode: "subscription",
      customer: sub.customer,
      paymentStatus: "paid",
      subscription: sub.subscriptionId,
      amountTotal: 4_900,
      metadata: { userId: sub.userId, plan: "pro", interval: "month" },
    });
    expect(await outcome(officialEvent("checkout.session.completed", session))).toBe("subscription_applied");
    expect(await account(sub.userId)).toMatchObject({ plan: "pro", interval: "month", balance: SIGNUP });
  });
});

describe("invoices (official invoice and line_item)", () => {
  it("invoice.paid of a subscription's first period grants the plan's allowance", async () => {
    const sub = await proSubscriber();
    expect(await outcome(officialEvent("invoice.paid", sub.firstInvoice()))).toBe("allowance_granted");
    expect(await balance(sub.userId)).toBe(SIGNUP + PRO_MONTH);
  });

  it("invoice.payment_failed records the failure on the account", async () => {
    const sub = await proSubscriber();
    expect(await outcome(officialEvent("invoice.payment_failed", sub.firstInvoice("open"), { created: T0 + 60 }))).toBe(
      "payment_failure_recorded",
    );
    expect((await account(sub.userId)).paymentFailedAt).toBe((T0 + 60) * 1000);
    expect(await balance(sub.userId)).toBe(SIGNUP);
  });
});

describe("invoice lines parsed only for what a decision reads", () => {
  /** invoice.paid of the official first invoice whose (only) line went through `edit`. */
  async function paidWithLine(edit: (line: ReturnType<typeof invoiceLine>) => unknown) {
    const sub = await proSubscriber();
    const paid = sub.firstInvoice();
    paid.lines.data = paid.lines.data.map(edit);
    return { sub, paid };
  }

  it("a line without `proration` (Stripe's default: false) is a subscription line: the allowance is granted", async () => {
    const { sub, paid } = await paidWithLine((line) => without(line, "parent.subscription_item_details.proration"));
    expect(paid.lines.data[0].parent.subscription_item_details).not.toHaveProperty("proration");
    expect(await outcome(officialEvent("invoice.paid", paid))).toBe("allowance_granted");
    expect(await balance(sub.userId)).toBe(SIGNUP + PRO_MONTH);
  });

  it("a line whose period lacks `end` (no decision reads it) still grants the allowance", async () => {
    const { sub, paid } = await paidWithLine((line) => without(line, "period.end"));
    expect(await outcome(officialEvent("invoice.paid", paid))).toBe("allowance_granted");
    expect(await balance(sub.userId)).toBe(SIGNUP + PRO_MONTH);
  });

  it("a one-off invoice-item line without `proration` beside the plan's line does not drop the invoice", async () => {
    const sub = await proSubscriber();
    const paid = sub.firstInvoice();
    const [line] = paid.lines.data;
    const oneOff = {
      ...line,
      id: uniqueStripeId("il"),
      parent: { ...line.parent, type: "invoice_item_details", subscription_item_details: null, invoice_item_details: { invoice_item: uniqueStripeId("ii"), proration_details: null, subscription: sub.subscriptionId } },
      pricing: { ...line.pricing, price_details: { price: "price_setup_fee", product: "prod_setup" } },
    };
    paid.lines.data = [line, oneOff];
    expect(await outcome(officialEvent("invoice.paid", paid))).toBe("allowance_granted");
    expect(await balance(sub.userId)).toBe(SIGNUP + PRO_MONTH);
  });

  it("a proration line still never grants an allowance (the flag is read where present)", async () => {
    const sub = await proSubscriber();
    const paid = sub.prorationInvoice();
    expect(await outcome(officialEvent("invoice.paid", paid))).toBe("ignored_billing_reason");
    expect(await balance(sub.userId)).toBe(SIGNUP);
  });
});

describe("subscriptions (official subscription)", () => {
  it("customer.subscription.created, updated and deleted apply the subscription's state", async () => {
    const sub = await proSubscriber();
    expect(await outcome(officialEvent("customer.subscription.created", sub.sub("incomplete"), { created: T0 }))).toBe(
      "subscription_applied",
    );
    expect(await outcome(officialEvent("customer.subscription.updated", sub.sub("active"), { created: T0 + 10 }))).toBe(
      "subscription_applied",
    );
    expect(await account(sub.userId)).toMatchObject({ plan: "pro", interval: "month" });
    expect((await account(sub.userId)).subscription).toMatchObject({ id: sub.subscriptionId, status: "active" });
    expect(await outcome(officialEvent("customer.subscription.deleted", sub.sub("canceled"), { created: T0 + 20 }))).toBe(
      "subscription_applied",
    );
    expect((await account(sub.userId)).plan).toBe("free");
  });
});

describe("older API version shapes (an endpoint pinned before 2025-03-31.basil) parse to the same facts", () => {
  // Regression (red team): the same invoice shaped by an older endpoint API version was
  // `ignored_unknown_price`, its customer.subscription.created `ignored_malformed_object`.
  it("invoice.paid with the line's top-level `price` and `proration` grants exactly as the new shape does", async () => {
    const current = await proSubscriber();
    const older = await proSubscriber();
    const paid = olderApiInvoice(older.firstInvoice());
    expect(paid).not.toHaveProperty("parent");
    expect(paid.lines.data[0]).not.toHaveProperty("pricing");
    expect(paid.lines.data[0]).toMatchObject({ price: { id: "price_pro_monthly" }, proration: false, subscription: older.subscriptionId });
    expect(await outcome(officialEvent("invoice.paid", current.firstInvoice()))).toBe("allowance_granted");
    expect(await outcome(officialEvent("invoice.paid", paid))).toBe("allowance_granted");
    expect(await balance(older.userId)).toBe(await balance(current.userId));
    expect(await balance(older.userId)).toBe(SIGNUP + PRO_MONTH);
    // the refs name the subscription from the invoice's top level too
    const [entry] = await fx.deps.ledger.store.listEntries(older.userId, { limit: 1 });
    expect(entry?.refs).toMatchObject({ invoice: older.invoiceId, subscription: older.subscriptionId, plan: "pro" });
  });

  it("an older-shape proration line (top-level `proration: true`) never grants an allowance", async () => {
    const sub = await proSubscriber();
    const paid = olderApiInvoice(sub.prorationInvoice());
    expect(paid.lines.data[0].proration).toBe(true);
    expect(await outcome(officialEvent("invoice.paid", paid))).toBe("ignored_billing_reason");
    expect(await balance(sub.userId)).toBe(SIGNUP);
  });

  it("where a line carries both shapes, the new one wins", async () => {
    const sub = await proSubscriber();
    const paid = sub.firstInvoice();
    // an older `price` naming a price not configured beside the new shape's plan price
    paid.lines.data = paid.lines.data.map((line: Record<string, unknown>) => ({ ...line, price: { id: "price_not_configured" }, proration: true }));
    expect(await outcome(officialEvent("invoice.paid", paid))).toBe("allowance_granted");
    expect(await balance(sub.userId)).toBe(SIGNUP + PRO_MONTH);
  });

  it("customer.subscription.created with the period on the subscription changes the plan exactly as the new shape does", async () => {
    const current = await proSubscriber();
    const older = await proSubscriber();
    const created = olderApiSubscription(older.sub("active"));
    expect(created.items.data[0]).not.toHaveProperty("current_period_end");
    expect(created).toMatchObject({ current_period_start: T0, current_period_end: T0 + 31 * 86_400 });
    expect(await outcome(officialEvent("customer.subscription.created", current.sub("active"), { created: T0 }))).toBe("subscription_applied");
    expect(await outcome(officialEvent("customer.subscription.created", created, { created: T0 }))).toBe("subscription_applied");
    const [now, then] = [await account(current.userId), await account(older.userId)];
    expect(then).toMatchObject({ plan: "pro", interval: "month" });
    expect({ ...then.subscription, id: undefined }).toEqual({ ...now.subscription, id: undefined });
    expect(then.subscription).toMatchObject({ id: older.subscriptionId, periodStart: T0 * 1000, periodEnd: (T0 + 31 * 86_400) * 1000 });
  });

  it("a subscription with its period on neither the items nor itself is still not understood (a decision reads it)", async () => {
    const sub = await proSubscriber();
    const created = olderApiSubscription(sub.sub("active"));
    delete created.current_period_end;
    expect(await outcome(officialEvent("customer.subscription.created", created, { created: T0 }))).toBe("parked_malformed_object");
    expect((await account(sub.userId)).plan).toBe("free");
  });
});

describe("refunds and disputes (official charge, dispute, refund)", () => {
  it("charge.refunded claws the pack back", async () => {
    const buyer = await packBought();
    const refunded = charge({ id: buyer.chargeId, paymentIntent: buyer.paymentIntent, customer: buyer.customer, amount: 1_000, refunded: 1_000 });
    expect(await outcome(officialEvent("charge.refunded", refunded, { created: T0 + 10 }))).toBe("clawed_back");
    expect(await balance(buyer.userId)).toBe(SIGNUP);
  });

  it("charge.dispute.created claws back; charge.dispute.closed won gives it back", async () => {
    const buyer = await packBought();
    const dp = uniqueStripeId("dp");
    const of = (status: string) => dispute({ id: dp, charge: buyer.chargeId, paymentIntent: buyer.paymentIntent, amount: 1_000, status });
    expect(await outcome(officialEvent("charge.dispute.created", of("needs_response")))).toBe("clawed_back");
    expect(await balance(buyer.userId)).toBe(SIGNUP);
    expect(await outcome(officialEvent("charge.dispute.closed", of("won"), { created: T0 + 500 }))).toBe("reinstated");
    expect(await balance(buyer.userId)).toBe(SIGNUP + STARTER);
  });

  it("refund.failed and charge.refund.updated (canceled) give a refund's claw back", async () => {
    for (const [type, status] of [
      ["refund.failed", "failed"],
      ["charge.refund.updated", "canceled"],
    ] as const) {
      const buyer = await packBought();
      const refunded = charge({ id: buyer.chargeId, paymentIntent: buyer.paymentIntent, customer: buyer.customer, amount: 1_000, refunded: 1_000 });
      expect(await outcome(officialEvent("charge.refunded", refunded, { created: T0 + 10 }))).toBe("clawed_back");
      const re = refund({ id: uniqueStripeId("re"), charge: buyer.chargeId, paymentIntent: buyer.paymentIntent, amount: 1_000, created: T0 + 10, status });
      expect(await outcome(officialEvent(type, re, { created: T0 + 100 }))).toBe("reinstated");
      expect(await balance(buyer.userId)).toBe(SIGNUP + STARTER);
    }
  });
});

describe("coverage", () => {
  it("every handled event type was delivered above in Stripe's official shape", () => {
    expect([...covered].sort()).toEqual([...HANDLED_EVENT_TYPES].sort());
  });
});
