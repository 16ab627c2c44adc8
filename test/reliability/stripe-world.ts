import { invoicePaid, T0, TEST_PRICES } from "../helpers/billing.js";
import { chargeRefunded, stripeEvent, subscriptionObject } from "../helpers/stripe-events.js";
import { disputeClosed, disputeCreated, refundEvent } from "../helpers/stripe-reversals.js";
import type { StripeTestServer } from "../helpers/stripe-server.js";
import { type Random, SIGNUP_BONUS } from "./harness.js";

/**
 * A generated population of Stripe customers and everything Stripe would tell us about them:
 * subscriptions (created, activated, renewed, upgraded with proration invoices, failed payments,
 * scheduled cancels, deletions), credit packs (paid at once or asynchronously, refunded in part or
 * in full, disputed, disputes lost; refund updates, failed refunds and won disputes that moved no
 * money of this world), refunds of subscription invoices, and noise (event types we ignore,
 * strangers' invoices, expired checkouts). Alongside the events it keeps the business facts, from
 * which `expectedState` derives every account's end state without asking the system anything:
 * each pack, invoice and upgrade credited once at the published numbers (docs/billing.md,
 * "Catalog"), each charge clawed back in proportion to the money returned, the subscription state of the latest event, and the
 * failed-payment mark of a failure no later payment followed.
 */

// biome-ignore lint/suspicious/noExplicitAny: Stripe events are arbitrary JSON
export type Json = any;

/** Allowances and pack sizes as published in docs/billing.md ("Catalog"), kept here independently of lib/catalog. */
const ALLOWANCE = { plus: 40_000, pro: 100_000 } as const;
const PACK_CREDITS = { starter: 50_000, pro: 200_000, enterprise: 1_000_000 } as const;
const PACK_CENTS = { starter: 1_000, pro: 3_500, enterprise: 15_000 } as const;
type PaidPlan = keyof typeof ALLOWANCE;
type Pack = keyof typeof PACK_CREDITS;

const priceOf = (plan: PaidPlan, interval: "month" | "year") =>
  TEST_PRICES[`STRIPE_PRICE_${plan.toUpperCase()}_${interval === "month" ? "MONTHLY" : "YEARLY"}` as keyof typeof TEST_PRICES];

interface Charge {
  bucket: "allowance" | "purchased";
  /** credits the payment granted (no schedule runs in this world: an annual invoice's month 0) */
  credits: number;
  /**
   * monthly allowances the payment buys: 12 for an annual invoice (docs/billing.md, "Refunds and
   * disputes": refunds take back what it bought, as far as granted)
   */
  months?: number;
  basisCents: number;
  refundedCents: number[];
  disputes: number[];
}

export interface WorldUser {
  userId: string;
  customer: string;
  plan: "free" | PaidPlan;
  interval: "month" | "year";
  subscriptionId?: string;
  /** ledger facts that credit: key → amount */
  credits: Map<string, number>;
  charges: Charge[];
  failedAt: number[];
  paidAt: number[];
  /** every event about this user, in the order Stripe would have sent them */
  events: Json[];
}

export interface World {
  users: WorldUser[];
  /** events about nobody we know (ignored) */
  noise: Json[];
  /** subscriptions as Stripe holds them at the end (what a retrieve answers) */
  subscriptions: Map<string, Json>;
  /** payment intent → invoice, as Stripe's invoice payments answer */
  invoicePayments: Map<string, string>;
}

export interface Delivery {
  event: Json;
  /** 0 for the first copy of an event, 1.. for duplicates */
  copy: number;
}

/** Builds users until their events, with duplicates, reach `deliveries`; ids are unique per `runId`. */
export function buildWorld(rng: Random, options: { runId: string; deliveries: number; duplicateRate?: number }): {
  world: World;
  deliveries: Delivery[];
} {
  const world: World = { users: [], noise: [], subscriptions: new Map(), invoicePayments: new Map() };
  let serial = 0;
  const id = (prefix: string) => `${prefix}_${options.runId}x${++serial}`;
  const copiesOf = new Map<Json, number>();
  let total = 0;
  const add = (events: Json[], event: Json) => {
    events.push(event);
    const copies = 1 + (rng.chance(options.duplicateRate ?? 0.35) ? rng.int(1, 3) : 0);
    copiesOf.set(event, copies);
    total += copies;
  };

  while (total < options.deliveries) {
    const index = world.users.length;
    const userId = `wh-${options.runId}-${index}`;
    const user: WorldUser = {
      userId,
      customer: id("cus"),
      plan: "free",
      interval: "month",
      credits: new Map([["signup", SIGNUP_BONUS]]),
      charges: [],
      failedAt: [],
      paidAt: [],
      events: [],
    };
    world.users.push(user);
    const t = T0 + index * 100;
    const kind = rng.weighted({ subscriber: 4, packs: 4, both: 2 });
    if (kind !== "packs") subscriptionStory(user, t);
    if (kind !== "subscriber") packStory(user, t + 70);
    if (rng.chance(0.15)) {
      add(world.noise, stripeEvent("customer.created", { created: t, object: { id: user.customer, metadata: { userId } } }));
    }
    if (rng.chance(0.1)) {
      add(world.noise, stripeEvent("customer.created", { type: "payment_intent.succeeded", created: t }));
    }
    if (rng.chance(0.1)) {
      // a stranger's paid invoice: no customer mapping, no user in the metadata
      add(
        world.noise,
        invoicePaid({ invoiceId: id("in"), customer: id("cus"), subscriptionId: id("sub"), userId: "", price: TEST_PRICES.STRIPE_PRICE_PRO_MONTHLY, created: t }),
      );
    }
  }

  function subscriptionStory(user: WorldUser, t: number) {
    const plan = rng.pick(["plus", "pro"] as const);
    const interval = rng.chance(0.15) ? "year" : "month";
    const price = priceOf(plan, interval);
    const subscriptionId = id("sub");
    user.subscriptionId = subscriptionId;
    const upgraded = plan === "plus" && interval === "month" && rng.chance(0.4);
    const finalPrice = upgraded ? priceOf("pro", "month") : price;
    const cancelScheduled = rng.chance(0.3);
    const deleted = rng.chance(0.2);
    const periodEnd = T0 + (interval === "month" ? 31 : 365) * 86_400;
    const invoiceId = id("in");
    const metadata = { plan, interval };
    const sub = (patch: { status?: string; price?: string; cancelAtPeriodEnd?: boolean; metadata?: Record<string, string> } = {}) =>
      subscriptionObject({
        id: subscriptionId,
        customer: user.customer,
        price: patch.price ?? price,
        userId: user.userId,
        status: patch.status ?? "active",
        periodStart: T0,
        periodEnd,
        cancelAtPeriodEnd: patch.cancelAtPeriodEnd ?? false,
        metadata: patch.metadata ?? metadata,
        latestInvoice: invoiceId,
      });
    const paid = (input: {
      invoiceId: string;
      billingReason: string;
      created: number;
      price?: string;
      proration?: boolean;
      metadata?: Record<string, string>;
      amountPaid?: number;
      linePeriod?: { start: number; end: number };
    }) => {
      user.paidAt.push(input.created);
      return invoicePaid({
        customer: user.customer,
        subscriptionId,
        userId: user.userId,
        price: input.price ?? price,
        ...input,
      });
    };
    const allowance = (key: string) => user.credits.set(`invoice#${key}`, ALLOWANCE[plan]);

    add(user.events, stripeEvent("customer.subscription.created", { created: t, object: sub({ status: "incomplete" }) }));
    add(user.events, stripeEvent("customer.subscription.updated", { created: t + 1, object: sub() }));
    add(
      user.events,
      stripeEvent("checkout.session.completed.subscription", {
        created: t + 1,
        object: {
          id: id("cs_test_sub"),
          customer: user.customer,
          subscription: subscriptionId,
          client_reference_id: user.userId,
          metadata: { userId: user.userId, plan, interval },
        },
      }),
    );
    add(user.events, paid({ invoiceId, billingReason: "subscription_create", created: t + 2 }));
    allowance(invoiceId);
    if (interval === "month" && rng.chance(0.6)) {
      const cycle = id("in");
      add(user.events, paid({ invoiceId: cycle, billingReason: "subscription_cycle", created: t + 10 }));
      allowance(cycle);
    }
    if (rng.chance(0.35)) {
      const failed = id("in");
      user.failedAt.push(t + 20);
      add(
        user.events,
        stripeEvent("invoice.payment_failed", {
          created: t + 20,
          object: {
            id: failed,
            customer: user.customer,
            parent: { subscription_details: { subscription: subscriptionId, metadata: { userId: user.userId } } },
          },
        }),
      );
      if (rng.chance(0.5)) {
        add(user.events, paid({ invoiceId: failed, billingReason: "subscription_cycle", created: t + 30 }));
        allowance(failed);
      }
    }
    if (rng.chance(0.15)) {
      // the first invoice refunded, in part and maybe then in full (cumulative amounts)
      const paymentIntent = id("pi");
      const chargeId = id("ch");
      world.invoicePayments.set(paymentIntent, invoiceId);
      const steps = rng.chance(0.3) ? [1_000, 2_000] : [rng.pick([500, 1_000, 2_000])];
      user.charges.push({
        bucket: "allowance",
        credits: ALLOWANCE[plan],
        months: interval === "year" ? 12 : 1,
        basisCents: 2_000,
        refundedCents: steps,
        disputes: [],
      });
      steps.forEach((refunded, step) => {
        add(user.events, chargeRefunded({ chargeId, paymentIntent, customer: user.customer, amount: 2_000, refunded, created: t + 35 + step }));
      });
    }
    if (upgraded) {
      // change-plan upgraded at `at`: Stripe prorated from it, and the top-up is the allowance
      // difference for the part of the period left after it (floored), under the invoice's key
      const at = t + 40;
      const upgradeMetadata = {
        plan: "pro",
        interval: "month",
        upgradeFrom: "plus",
        upgradeAt: String(at),
        upgradePeriodStart: String(T0),
        upgradePeriodEnd: String(periodEnd),
      };
      add(user.events, stripeEvent("customer.subscription.updated", { created: at, object: sub({ price: finalPrice, metadata: upgradeMetadata }) }));
      const proration = { billingReason: "subscription_update", price: finalPrice, proration: true, metadata: upgradeMetadata, amountPaid: 3_000 };
      const prorationInvoice = id("in");
      add(user.events, paid({ invoiceId: prorationInvoice, created: at + 1, ...proration, linePeriod: { start: at, end: periodEnd } }));
      // a later proration invoice (a switch in the portal) still carries the metadata, but its
      // lines start at its own instant: no top-up
      if (rng.chance(0.5)) add(user.events, paid({ invoiceId: id("in"), created: at + 2, ...proration, linePeriod: { start: at + 2, end: periodEnd } }));
      const topUp = Math.floor(((ALLOWANCE.pro - ALLOWANCE.plus) * (periodEnd - at)) / (periodEnd - T0));
      user.credits.set(`upgrade#${prorationInvoice}`, topUp);
    } else if (rng.chance(0.2)) {
      // a proration invoice of no upgrade we made: never an allowance
      add(user.events, paid({ invoiceId: id("in"), billingReason: "subscription_update", created: t + 45, proration: true }));
    }
    const live = { price: finalPrice, ...(upgraded ? { metadata: { plan: "pro", interval: "month" } } : {}) };
    if (cancelScheduled) {
      add(user.events, stripeEvent("customer.subscription.updated", { created: t + 50, object: sub({ ...live, cancelAtPeriodEnd: true }) }));
    }
    if (deleted) {
      add(user.events, stripeEvent("customer.subscription.deleted", { created: t + 60, object: sub({ ...live, status: "canceled", cancelAtPeriodEnd: cancelScheduled }) }));
    }
    world.subscriptions.set(subscriptionId, sub({ ...live, status: deleted ? "canceled" : "active", cancelAtPeriodEnd: cancelScheduled }));
    user.plan = deleted ? "free" : upgraded ? "pro" : plan;
    user.interval = deleted ? "month" : interval;
  }

  function packStory(user: WorldUser, t: number) {
    const count = rng.int(1, 3);
    for (let n = 0; n < count; n++) {
      const at = t + n * 5;
      const pack = rng.pick(["starter", "pro", "enterprise"] as const satisfies readonly Pack[]);
      const session = id("cs_test_pay");
      const paymentIntent = id("pi");
      const chargeId = id("ch");
      const amount = PACK_CENTS[pack];
      const object = {
        id: session,
        customer: user.customer,
        client_reference_id: user.userId,
        payment_intent: paymentIntent,
        amount_total: amount,
        payment_status: "paid",
        metadata: { userId: user.userId, pack },
      };
      if (rng.chance(0.06)) {
        // paid by bank debit, which then failed: nothing is bought
        add(user.events, stripeEvent("checkout.session.completed.payment", { created: at, object: { ...object, payment_status: "unpaid" } }));
        add(
          user.events,
          stripeEvent("checkout.session.async_payment_succeeded", {
            type: "checkout.session.async_payment_failed",
            created: at + 1,
            object: { ...object, payment_status: "unpaid" },
          }),
        );
        continue;
      }
      if (rng.chance(0.25)) {
        add(user.events, stripeEvent("checkout.session.completed.payment", { created: at, object: { ...object, payment_status: "unpaid" } }));
        add(user.events, stripeEvent("checkout.session.async_payment_succeeded", { created: at + 1, object }));
      } else {
        add(user.events, stripeEvent("checkout.session.completed.payment", { created: at, object }));
      }
      user.credits.set(`pack#${session}`, PACK_CREDITS[pack]);
      const charge: Charge = { bucket: "purchased", credits: PACK_CREDITS[pack], basisCents: amount, refundedCents: [], disputes: [] };
      if (rng.chance(0.3)) {
        charge.refundedCents = rng.pick([[amount], [Math.floor(amount / 2)], [Math.floor(amount / 4), amount]]);
        charge.refundedCents.forEach((refunded, step) => {
          add(user.events, chargeRefunded({ chargeId, paymentIntent, customer: user.customer, amount, refunded, created: at + 10 + step }));
        });
      }
      if (rng.chance(0.12)) {
        const disputed = rng.int(100, amount);
        const dispute = { disputeId: id("dp"), chargeId, paymentIntent, amount: disputed };
        charge.disputes.push(disputed);
        add(user.events, disputeCreated({ ...dispute, created: at + 20 }));
        // lost: the money stays with the customer, as when it was opened
        if (rng.chance(0.5)) add(user.events, disputeClosed({ ...dispute, status: "lost", created: at + 25 }));
      }
      if (charge.refundedCents.length && rng.chance(0.3)) {
        // a pending refund that then succeeded: nothing changes
        add(
          user.events,
          refundEvent("charge.refund.updated", {
            refundId: id("re"), chargeId, paymentIntent, amount: charge.refundedCents[0] as number, refundCreated: at + 10, created: at + 12, status: "succeeded",
          }),
        );
      }
      // Money back to the merchant about this charge from before the endpoint listened to its
      // refunds and disputes (no charge.refunded, no charge.dispute.created of it was ever sent):
      // a refund that failed, an inquiry closed in the merchant's favour. They returned no money
      // in this world's charge.refunded totals (all earlier), so they move nothing, in any order.
      // (Reversals of refunds and disputes the world did send are exercised by
      // test/integration/billing-reversals.test.ts: what they give back depends on arrival order,
      // which the storm's checks of crediting entries do not model.)
      if (rng.chance(0.1)) {
        const failed = { refundId: id("re"), chargeId, paymentIntent, amount: Math.ceil(amount / 2), refundCreated: at + 90 };
        add(user.events, refundEvent("refund.failed", { ...failed, created: at + 95 }));
        if (rng.chance(0.5)) add(user.events, refundEvent("charge.refund.updated", { ...failed, created: at + 95 }));
      }
      if (rng.chance(0.1)) {
        add(user.events, disputeClosed({ disputeId: id("dp"), chargeId, paymentIntent, amount, status: rng.pick(["won", "warning_closed"] as const), created: at + 60 }));
      }
      if (charge.refundedCents.length || charge.disputes.length) user.charges.push(charge);
    }
    if (rng.chance(0.1)) {
      add(
        user.events,
        stripeEvent("checkout.session.expired", {
          created: t + 30,
          object: { id: id("cs_test_pay"), customer: user.customer, client_reference_id: user.userId, metadata: { userId: user.userId, pack: "starter" } },
        }),
      );
    }
  }

  // Every event at least once, duplicates on top; trimmed to the exact delivery count.
  const all = [...world.users.flatMap((user) => user.events), ...world.noise];
  const deliveries: Delivery[] = all.flatMap((event) => Array.from({ length: copiesOf.get(event) ?? 1 }, (_, copy) => ({ event, copy })));
  for (let i = deliveries.length - 1; i >= 0 && deliveries.length > options.deliveries; i--) {
    if ((deliveries[i] as Delivery).copy > 0) deliveries.splice(i, 1);
  }
  return { world, deliveries: rng.shuffle(deliveries) };
}

export interface ExpectedAccount {
  balance: number;
  /** the split: packs (less what their refunds took) never lapse; everything else is allowance */
  allowance: number;
  purchased: number;
  plan: "free" | PaidPlan;
  interval: "month" | "year";
  /** epoch ms, or null */
  paymentFailedAt: number | null;
  /** keys of crediting facts, each credited exactly once */
  creditKeys: Map<string, number>;
  clawed: number;
}

/** The end state of a user from the business facts alone. */
export function expectedState(user: WorldUser): ExpectedAccount {
  const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
  const clawedFrom = (bucket: Charge["bucket"]) =>
    sum(
      user.charges
        .filter((charge) => charge.bucket === bucket)
        .map((charge) => {
          const returned = Math.min(charge.basisCents, Math.max(0, ...charge.refundedCents) + sum(charge.disputes));
          const bought = charge.credits * (charge.months ?? 1);
          return Math.min(bought, Math.round((bought * returned) / charge.basisCents), charge.credits);
        }),
    );
  const packs = sum([...user.credits].filter(([key]) => key.startsWith("pack#")).map(([, amount]) => amount));
  const credited = sum([...user.credits.values()]);
  const purchased = packs - clawedFrom("purchased");
  const allowance = credited - packs - clawedFrom("allowance");
  const lastFailure = Math.max(-1, ...user.failedAt);
  const lastPayment = Math.max(-1, ...user.paidAt);
  return {
    balance: allowance + purchased,
    allowance,
    purchased,
    plan: user.plan,
    interval: user.interval,
    paymentFailedAt: lastFailure > lastPayment ? lastFailure * 1000 : null,
    creditKeys: user.credits,
    clawed: clawedFrom("purchased") + clawedFrom("allowance"),
  };
}

/** Puts the world's subscriptions and invoice payments into the test Stripe server. */
export function prepareStripe(stripe: StripeTestServer, world: World): void {
  for (const [id, subscription] of world.subscriptions) stripe.subscriptions.set(id, structuredClone(subscription));
  for (const [paymentIntent, invoice] of world.invoicePayments) stripe.invoicePayments.set(paymentIntent, invoice);
}
