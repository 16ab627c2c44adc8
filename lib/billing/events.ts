import type * as z from "zod/mini";
import { isPackId, type PackId, type PlanId, planOf } from "../catalog.js";
import { topUpPaid } from "../topup/paid.js";
import { clawBack, ensureAccount, grantCredits } from "../ledger/index.js";
import { logger } from "../logger.js";
import { ownValue } from "../own-keys.js";
import { type BillingDeps, requireStripe } from "./deps.js";
import { grantUpgradeTopUp, prorates, type UpgradeTopUpResult } from "./manage.js";
import { grantPurchase } from "./purchases.js";
import { clawBackPayment } from "./refunds.js";
import {
  chargeSchema,
  checkoutSessionSchema,
  closedDisputeSchema,
  disputeSchema,
  invoiceSchema,
  prorationLines,
  type StripeInvoice,
  invoiceSubscription,
  refundSchema,
  subscriptionLines,
  subscriptionSchema,
  userIdFrom,
} from "./stripe-objects.js";
import { applySubscription, endPaidYearOfEndedSubscription, snapshotOf } from "./subscription.js";
import {
  allowancePeriodAt,
  planChangeShare,
  type ProratedPlanChange,
  proratedPlanChange,
  readUpgradeMetadata,
  type UpgradeTerms,
  upgradeTopUp,
  yearStartBefore,
} from "./upgrade-top-up.js";

/** The part of a verified Stripe event billing reads. */
export interface StripeEventEnvelope {
  id: string;
  type: string;
  /** epoch seconds */
  created: number;
  data: { object: unknown };
}

/**
 * Whose event this is: the customer → user mapping we wrote when we created the customer, else
 * the user id we put in the object's metadata (read only after the signature was verified).
 */
async function resolveUser(
  deps: BillingDeps,
  customerId: string | null | undefined,
  ...claimed: (string | null | undefined)[]
): Promise<string | undefined> {
  const mapped = customerId ? await deps.store.getCustomerUser(customerId) : undefined;
  const fromMetadata = userIdFrom(...claimed);
  if (mapped && fromMetadata && mapped !== fromMetadata) {
    logger.error("metadata user differs from the customer's user; trusting the customer mapping", {
      customer: customerId,
      mapped,
      fromMetadata,
    });
  }
  return mapped ?? fromMetadata;
}

type Handler = (deps: BillingDeps, event: StripeEventEnvelope) => Promise<string>;

/** Parses the event's object; a shape we cannot read is logged and ignored (a retry would not help). */
function objectOf<T extends z.ZodMiniType>(schema: T, event: StripeEventEnvelope): z.infer<T> | undefined {
  const parsed = schema.safeParse(event.data.object);
  if (parsed.success) return parsed.data;
  logger.error("stripe event object not understood", {
    eventId: event.id,
    type: event.type,
    issue: parsed.error.issues[0]?.message,
    path: parsed.error.issues[0]?.path?.join("."),
  });
  return undefined;
}

/**
 * Outcomes of an event of a handled type that cannot be applied now: the webhook parks it (a
 * durable record, no receipt) instead of acknowledging it as done; `replayParkedEvent` applies it
 * again once the missing fact (a customer mapping, a configured price or pack, a reachable
 * subscription, a parser that understands it) is there.
 */
export const PARKED_PREFIX = "parked_";
export const isParkedOutcome = (outcome: string) => outcome.startsWith(PARKED_PREFIX);
const MALFORMED = `${PARKED_PREFIX}malformed_object`;
const UNKNOWN_CUSTOMER = `${PARKED_PREFIX}unknown_customer`;
const eventTime = (event: StripeEventEnvelope) => event.created * 1000;

/**
 * The pack a paid session bought: the one our checkout named in its metadata, else the one its
 * line item's price is configured for (a session made elsewhere — a payment link, the dashboard —
 * or whose metadata was lost), read from Stripe. Undefined when neither names a configured pack:
 * the event is parked (a price configured later makes its replay apply).
 */
async function packOf(
  deps: BillingDeps,
  session: { id: string; metadata?: Record<string, string> | null | undefined },
): Promise<{ pack: PackId; credits: number } | undefined> {
  const sold = (pack: string | undefined) => {
    const definition = pack && isPackId(pack) ? ownValue(deps.ledger.catalog.packs, pack) : undefined;
    return definition ? { pack: pack as PackId, credits: definition.credits } : undefined;
  };
  const named = sold(session.metadata?.pack);
  if (named || !deps.stripe) return named;
  const prices = (await deps.stripe.checkoutSessionPrices(session.id)) ?? [];
  const packs = [...new Set(prices.map((price) => deps.prices.packOfPrice(price)))];
  // one configured pack per session: a session selling anything else is not one we know how to grant
  return packs.length === 1 ? sold(packs[0]) : undefined;
}

/**
 * checkout.session.completed / async_payment_succeeded. Subscription mode links customer,
 * subscription and plan (from the subscription as Stripe has it now) and grants nothing: the
 * paid invoice grants. Payment mode grants the pack once per session, only once paid.
 */
const onCheckoutCompleted: Handler = async (deps, event) => {
  const session = objectOf(checkoutSessionSchema, event);
  if (!session) return MALFORMED;
  const userId = await resolveUser(deps, session.customer, session.metadata?.userId, session.client_reference_id);
  if (!userId) return UNKNOWN_CUSTOMER;
  const kind = session.mode === "subscription" ? "subscription" : session.mode === "payment" ? "pack" : undefined;
  if (!kind) return "ignored_checkout_mode";
  await ensureAccount(deps.ledger, userId);
  if (session.customer) {
    await deps.store.putCustomerUser(session.customer, userId, deps.ledger.now());
    await deps.store.linkAccountCustomer(userId, session.customer);
  }
  // The checkout is over: the user may start another one — for a subscription only once it is
  // recorded (until then subscribe must keep refusing, or a paying user could check out twice; a
  // failure here answers 5xx and Stripe's redelivery finishes it, the marker expiring meanwhile).
  const release = () => deps.store.releaseCheckout(userId, kind, { sessionId: session.id });

  if (kind === "subscription") {
    if (!session.subscription) {
      await release();
      return "ignored_no_subscription";
    }
    const remote = await requireStripe(deps).retrieveSubscription(session.subscription);
    const parsed = remote ? subscriptionSchema.safeParse(remote) : undefined;
    if (!parsed?.success) {
      logger.error("checkout's subscription not found or not understood", { subscription: session.subscription });
      await release();
      return `${PARKED_PREFIX}subscription_unavailable`;
    }
    const outcome = await applySubscription(deps, userId, snapshotOf(parsed.data, deps), eventTime(event));
    await release();
    return `subscription_${outcome}`;
  }
  await release();

  if (session.payment_status !== "paid") return "pack_awaiting_payment";
  const bought = await packOf(deps, session);
  if (!bought) {
    logger.error("paid pack session without a known pack", { session: session.id, pack: session.metadata?.pack });
    return `${PARKED_PREFIX}unknown_pack`;
  }
  const { pack, credits } = bought;
  const result = await grantPurchase(
    deps,
    {
      userId,
      key: `pack#${session.id}`,
      amount: credits,
      bucket: "purchased",
      reason: "pack",
      refs: { session: session.id, pack, ...(session.payment_intent ? { paymentIntent: session.payment_intent } : {}) },
    },
    session.payment_intent ? { id: session.payment_intent, amountCents: session.amount_total ?? 0 } : undefined,
  );
  return result.applied ? "pack_granted" : "pack_already_granted";
};

/** checkout.session.expired / async_payment_failed: the checkout is over; nothing was bought. */
const onCheckoutClosed: Handler = async (deps, event) => {
  const session = objectOf(checkoutSessionSchema, event);
  if (!session) return MALFORMED;
  const userId = await resolveUser(deps, session.customer, session.metadata?.userId, session.client_reference_id);
  if (!userId) return UNKNOWN_CUSTOMER;
  const kind = session.mode === "subscription" ? "subscription" : "pack";
  await ensureAccount(deps.ledger, userId);
  await deps.store.releaseCheckout(userId, kind, { sessionId: session.id });
  return "checkout_closed";
};

const ALLOWANCE_REASONS = new Set(["subscription_create", "subscription_cycle"]);

/**
 * invoice.paid: an invoice that bills a plan's price for a whole new period (a line of a plan
 * price that is not a proration: the first invoice, a renewal, or a switch between monthly and
 * annual, for which Stripe restarts the billing cycle) grants the plan's monthly allowance once
 * per invoice (annual plans: month 0; the sweep grants months 1..11). Proration-only invoices
 * never grant an allowance; one that paid an upgrade we made grants its prorated top-up (a
 * backstop for change-plan: same invoice, same key, same terms, same amount).
 */
const onInvoicePaid: Handler = async (deps, event) => {
  const invoice = objectOf(invoiceSchema, event);
  if (!invoice) return MALFORMED;
  const details = invoiceSubscription(invoice);
  const metadata = details.metadata;
  const userId = await resolveUser(deps, invoice.customer, metadata.userId);
  if (!userId) return UNKNOWN_CUSTOMER;
  await ensureAccount(deps.ledger, userId);
  // A one-off invoice is auto top-up's (or nothing we sell): its payment says nothing of the
  // subscription's, so it neither clears a renewal's failure nor is read as a plan line.
  if (!details.subscription) return onTopUpInvoicePaid(deps, userId, invoice);
  await deps.store.clearPaymentFailed(userId, eventTime(event));
  const reason = invoice.billing_reason ?? "";

  const line = subscriptionLines(invoice)
    .map((candidate) => ({ ...candidate, plan: deps.prices.planOfPrice(candidate.price) }))
    .find((candidate) => candidate.plan !== undefined);
  const plan = line?.plan;
  // Whatever the billing reason (`subscription_update` for a portal switch of interval), a paid
  // period of a plan buys that period's allowance.
  if (plan || ALLOWANCE_REASONS.has(reason)) {
    if (!plan) {
      logger.error("paid subscription invoice without a configured plan price", { invoice: invoice.id });
      return `${PARKED_PREFIX}unknown_price`;
    }
    const credits = planOf(plan.plan, deps.ledger.catalog).monthlyAllowance;
    // An annual invoice grants month 0 and pays months 1..11 of the year its line starts: the
    // schedule grants those from this share (lib/ledger/paid-year.ts), not from the plan.
    const yearStart = plan.interval === "year" ? line?.periodStart : undefined;
    if (plan.interval === "year" && yearStart === undefined) {
      logger.error("annual invoice line without its period", { invoice: invoice.id });
      return MALFORMED;
    }
    const share =
      yearStart === undefined
        ? undefined
        : { anchor: yearStart * 1000, fromMonth: 1, monthly: credits, ...(details.subscription ? { subscription: details.subscription } : {}) };
    const result = await grantPurchase(
      deps,
      {
        userId,
        key: `invoice#${invoice.id}`,
        amount: credits,
        bucket: "allowance",
        reason: "invoice",
        refs: {
          invoice: invoice.id,
          plan: plan.plan,
          interval: plan.interval,
          billingReason: reason,
          ...(details.subscription ? { subscription: details.subscription } : {}),
        },
        ...(share ? { paidShare: share } : {}),
      },
      { id: invoice.id, amountCents: invoice.amount_paid },
    );
    if (share && details.subscription) await endPaidYearOfEndedSubscription(deps, userId, details.subscription, share.anchor);
    return result.applied ? "allowance_granted" : "allowance_already_granted";
  }

  if (reason === "subscription_update" && details.subscription) {
    // A proration invoice of an upgrade made by change-plan: the terms it was priced on are in the
    // subscription metadata snapshot, and one of its proration lines is the target plan's price
    // starting at that proration instant. The metadata stays on the subscription after the
    // upgrade, so a later proration invoice (a switch in the portal) carries it too, but its lines
    // start at its own instant: no top-up for it.
    const terms = readUpgradeMetadata(metadata);
    if (terms && prorates(deps, invoice, terms)) {
      const topUp = await grantUpgradeTopUp(deps, {
        userId,
        subscriptionId: details.subscription,
        invoiceId: invoice.id,
        terms,
        amountPaid: invoice.amount_paid,
      });
      return topUpOutcome(topUp);
    }
    // Not an upgrade we made: a plan change made elsewhere (the Stripe portal), read from the lines.
    const change = proratedPlanChange(prorationLines(invoice), (price) => deps.prices.planOfPrice(price));
    if (change) return applyProratedPlanChange(deps, { userId, subscriptionId: details.subscription, invoice, change });
    if (metadata.upgradeFrom) {
      logger.info("proration invoice not made by the upgrade its metadata names; no top-up", { invoice: invoice.id, userId });
    }
  }
  return "ignored_billing_reason";
};

/**
 * A paid one-off invoice of auto top-up (lib/topup; `metadata.autoTopUp` is its sequence number):
 * its pack is granted once per invoice, as a purchase its refunds and disputes take back from,
 * like a pack bought by checkout, and the top-up ends as succeeded (if the function that charged
 * it died before recording that). Only our own: a one-off invoice made elsewhere (a payment link
 * that also invoices, the Dashboard) is not a top-up, and its payment is granted, if at all, by
 * what sold it (its checkout session), never twice. The pack is the line's configured price's, or
 * — for an invoice paid after its price id was rotated (a 3-D Secure confirmation days later) — the
 * one our metadata names; neither known: parked, as an unknown checkout pack is.
 */
async function onTopUpInvoicePaid(deps: BillingDeps, userId: string, invoice: StripeInvoice): Promise<string> {
  const topUpSeq = Number(invoice.metadata?.autoTopUp);
  if (!Number.isSafeInteger(topUpSeq) || topUpSeq <= 0) return "ignored_one_off_invoice";
  const prices = subscriptionLines(invoice).map((line) => line.price);
  const byPrice = [...new Set(prices.map((price) => deps.prices.packOfPrice(price)))];
  const named = invoice.metadata?.pack;
  const pack = byPrice.length === 1 && byPrice[0] ? byPrice[0] : named && isPackId(named) ? named : undefined;
  const definition = pack ? ownValue(deps.ledger.catalog.packs, pack) : undefined;
  if (!pack || !definition) {
    logger.error("paid auto top-up invoice without a known pack", { invoice: invoice.id, userId });
    return `${PARKED_PREFIX}unknown_pack`;
  }
  const result = await grantPurchase(
    deps,
    {
      userId,
      key: `pack#${invoice.id}`,
      amount: definition.credits,
      bucket: "purchased",
      reason: "pack",
      refs: { invoice: invoice.id, pack, autoTopUp: topUpSeq },
    },
    { id: invoice.id, amountCents: invoice.amount_paid },
  );
  await topUpPaid(deps, userId, topUpSeq, invoice.id);
  return result.applied ? "pack_granted" : "pack_already_granted";
}

/** What `invoice.paid` of an upgrade's proration invoice answers. */
const topUpOutcome = (topUp: UpgradeTopUpResult) =>
  topUp.applied ? "upgrade_topped_up" : topUp.credits > 0 ? "upgrade_already_topped_up" : "upgrade_nothing_to_top_up";

/**
 * A paid proration invoice of a plan change made outside change-plan (the Stripe portal). An
 * upgrade gets the same prorated top-up, and on an annual plan the same share of the year's later
 * months, as one made through change-plan (same rule, same key `upgrade#<in>`). A downgrade whose
 * difference Stripe credited back takes the same rule the other way: the allowance difference for
 * the time left of the period in progress (`downgrade#<in>#period`) and, on an annual plan, a share
 * that takes the difference off the later months (`downgrade#<in>`, 0 credits).
 */
async function applyProratedPlanChange(
  deps: BillingDeps,
  input: { userId: string; subscriptionId: string; invoice: StripeInvoice; change: ProratedPlanChange },
): Promise<string> {
  const { userId, invoice, change } = input;
  const account = await deps.ledger.store.getAccount(userId);
  const current = account?.subscription?.id === input.subscriptionId ? account.subscription : undefined;
  // the period the invoice prorates: the subscription's as we know it, else (annual) the year before its end
  const known = current?.periodEnd === change.periodEnd * 1000 ? Math.floor(current.periodStart / 1000) : undefined;
  const periodStart = known ?? (change.interval === "year" ? yearStartBefore(change.periodEnd) : undefined);
  if (periodStart === undefined || periodStart > change.at) {
    logger.warn("proration of a plan change in a period we do not know; nothing granted", { invoice: invoice.id, userId });
    return "ignored_plan_change_period";
  }
  const allowance = (plan: PlanId) => planOf(plan, deps.ledger.catalog).monthlyAllowance;
  const period = allowancePeriodAt(change.interval, { start: periodStart, end: change.periodEnd }, change.at);
  if (allowance(change.to) > allowance(change.from)) {
    const terms: UpgradeTerms = {
      from: change.from,
      to: change.to,
      interval: change.interval,
      at: change.at,
      periodStart: period.start,
      periodEnd: period.end,
      ...(change.interval === "year" ? { yearStart: periodStart } : {}),
    };
    const topUp = await grantUpgradeTopUp(deps, {
      userId,
      subscriptionId: input.subscriptionId,
      invoiceId: invoice.id,
      terms,
      amountPaid: invoice.amount_paid,
    });
    return topUpOutcome(topUp);
  }
  // A downgrade whose difference Stripe credited back: the same rule the other way, so an upgrade,
  // a credited downgrade and an upgrade again cannot buy the period's difference twice. What the
  // period in progress granted beyond the lower plan is taken back for the time left (like a
  // refund, it may leave the balance below zero); on an annual plan the later months lose it too.
  const refs = { invoice: invoice.id, subscription: input.subscriptionId, from: change.from, to: change.to, at: change.at };
  const take = upgradeTopUp({
    fromAllowance: allowance(change.to),
    toAllowance: allowance(change.from),
    periodStart: period.start,
    periodEnd: period.end,
    at: change.at,
  });
  const taken = take > 0 ? await clawBack(deps.ledger, { userId, key: `downgrade#${invoice.id}#period`, amount: take, bucket: "allowance", reason: "refund", refs }) : undefined;
  const outcome = taken?.applied === false ? "downgrade_credit_already_recorded" : "downgrade_credit_recorded";
  const share = change.interval === "year" ? planChangeShare({ ...change, yearStart: periodStart }, deps.ledger.catalog) : undefined;
  if (!share) return outcome;
  const result = await grantCredits(deps.ledger, {
    userId,
    key: `downgrade#${invoice.id}`,
    amount: 0,
    bucket: "allowance",
    reason: "invoice",
    refs,
    paidShare: share,
  });
  return result.applied ? "downgrade_credit_recorded" : "downgrade_credit_already_recorded";
}

/** invoice.payment_failed: recorded on the account (GET /v1/credits shows it) until a later payment. */
const onInvoicePaymentFailed: Handler = async (deps, event) => {
  const invoice = objectOf(invoiceSchema, event);
  if (!invoice) return MALFORMED;
  // a one-off invoice (auto top-up's) failing says nothing of the subscription's payments
  if (!invoiceSubscription(invoice).subscription) return "ignored_one_off_invoice";
  const userId = await resolveUser(deps, invoice.customer, invoiceSubscription(invoice).metadata.userId);
  if (!userId) return UNKNOWN_CUSTOMER;
  await ensureAccount(deps.ledger, userId);
  await deps.store.markPaymentFailed(userId, eventTime(event));
  logger.info("invoice payment failed", { userId, invoice: invoice.id });
  return "payment_failure_recorded";
};

/** customer.subscription.created|updated|deleted: the subscription's state, out-of-order safe. */
const onSubscription: Handler = async (deps, event) => {
  const subscription = objectOf(subscriptionSchema, event);
  if (!subscription) return MALFORMED;
  const userId = await resolveUser(deps, subscription.customer, subscription.metadata?.userId);
  if (!userId) return UNKNOWN_CUSTOMER;
  return `subscription_${await applySubscription(deps, userId, snapshotOf(subscription, deps), eventTime(event))}`;
};

const onChargeRefunded: Handler = async (deps, event) => {
  const charge = objectOf(chargeSchema, event);
  if (!charge) return MALFORMED;
  if (!charge.payment_intent || charge.amount_refunded === 0) return "ignored_no_payment_intent";
  return clawBackPayment(deps, {
    kind: "refund",
    chargeId: charge.id,
    paymentIntentId: charge.payment_intent,
    chargeAmount: charge.amount,
    refundedCents: charge.amount_refunded,
    // the cumulative amount as of this event: the event time orders it among the charge's others
    at: event.created,
  });
};

/** The money facts of a dispute, as a created or a closed one names them. */
const disputeFacts = (dispute: { id: string; charge: string; amount: number }, paymentIntentId: string) => ({
  chargeId: dispute.charge,
  paymentIntentId,
  disputeId: dispute.id,
  disputedCents: dispute.amount,
});

const onDisputeCreated: Handler = async (deps, event) => {
  const dispute = objectOf(disputeSchema, event);
  if (!dispute) return MALFORMED;
  if (!dispute.payment_intent) return "ignored_no_payment_intent";
  return clawBackPayment(deps, { kind: "dispute", ...disputeFacts(dispute, dispute.payment_intent) });
};

/**
 * charge.refund.updated / refund.failed: a refund that failed or was canceled returned no money,
 * so what it took is given back (once per refund). Other updates (pending → succeeded) change nothing.
 */
const onRefundUpdated: Handler = async (deps, event) => {
  const refund = objectOf(refundSchema, event);
  if (!refund) return MALFORMED;
  if (refund.status !== "failed" && refund.status !== "canceled") return "ignored_refund_status";
  if (!refund.charge || !refund.payment_intent) return "ignored_no_payment_intent";
  return clawBackPayment(deps, {
    kind: "refund_reversed",
    chargeId: refund.charge,
    paymentIntentId: refund.payment_intent,
    refundId: refund.id,
    refundedCents: refund.amount,
    refundCreatedAt: refund.created,
    reversedAt: event.created,
  });
};

/**
 * charge.dispute.closed: won (or an inquiry closed without funds withdrawn) gives back what the
 * dispute took, once; lost keeps it (and takes it, if the dispute's creation has not arrived yet).
 */
const onDisputeClosed: Handler = async (deps, event) => {
  const dispute = objectOf(closedDisputeSchema, event);
  if (!dispute) return MALFORMED;
  if (!dispute.payment_intent) return "ignored_no_payment_intent";
  const about = disputeFacts(dispute, dispute.payment_intent);
  if (dispute.status === "lost") return clawBackPayment(deps, { kind: "dispute", ...about });
  if (dispute.status !== "won" && dispute.status !== "warning_closed") return "ignored_dispute_status";
  return clawBackPayment(deps, { kind: "dispute_reversed", ...about, reversedAt: event.created });
};

const HANDLERS: Record<string, Handler> = {
  "checkout.session.completed": onCheckoutCompleted,
  "checkout.session.async_payment_succeeded": onCheckoutCompleted,
  "checkout.session.async_payment_failed": onCheckoutClosed,
  "checkout.session.expired": onCheckoutClosed,
  "invoice.paid": onInvoicePaid,
  "invoice.payment_failed": onInvoicePaymentFailed,
  "customer.subscription.created": onSubscription,
  "customer.subscription.updated": onSubscription,
  "customer.subscription.deleted": onSubscription,
  "charge.refunded": onChargeRefunded,
  "charge.dispute.created": onDisputeCreated,
  "charge.dispute.closed": onDisputeClosed,
  "charge.refund.updated": onRefundUpdated,
  "refund.failed": onRefundUpdated,
};

export const HANDLED_EVENT_TYPES = Object.keys(HANDLERS);

/**
 * Applies one verified Stripe event; returns what it did. Every effect is idempotent (ledger
 * keys, conditional writes), so applying an event again — a redelivery, a retry after a crash,
 * twenty concurrent copies — changes nothing more. Transient failures throw.
 */
export async function applyStripeEvent(deps: BillingDeps, event: StripeEventEnvelope): Promise<string> {
  const handler = HANDLERS[event.type];
  if (!handler) return "ignored_event_type";
  return handler(deps, event);
}
