import { readFileSync } from "node:fs";
import Stripe from "stripe";

/**
 * Stripe events for tests, built from the fixtures in test/fixtures/stripe (shaped like the SDK's
 * pinned API version) with per-test ids, customers and amounts patched in, then signed like
 * Stripe signs them.
 */
export type FixtureName =
  | "checkout.session.completed.subscription"
  | "checkout.session.completed.payment"
  | "checkout.session.async_payment_succeeded"
  | "checkout.session.expired"
  | "invoice.paid"
  | "invoice.payment_failed"
  | "customer.subscription.created"
  | "customer.subscription.updated"
  | "customer.subscription.deleted"
  | "charge.refunded"
  | "charge.dispute.created"
  | "customer.created";

// biome-ignore lint/suspicious/noExplicitAny: fixtures are arbitrary JSON
type Json = any;

export function loadFixture(name: FixtureName): Json {
  return JSON.parse(readFileSync(new URL(`../fixtures/stripe/${name}.json`, import.meta.url), "utf8"));
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/** Deep merge: objects merge, everything else (arrays included) replaces. */
export function merge(base: Json, patch: Json): Json {
  if (!isObject(base) || !isObject(patch)) return patch;
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(patch)) out[key] = value === undefined ? base[key] : merge(base[key], value);
  return out;
}

let counter = 0;
export const uniqueStripeId = (prefix: string) => `${prefix}_${process.pid}x${++counter}`;

export interface EventPatch {
  id?: string;
  type?: string;
  /** epoch seconds */
  created?: number;
  object?: Json;
}

export function stripeEvent(name: FixtureName, patch: EventPatch = {}): Json {
  const fixture = loadFixture(name);
  return merge(fixture, {
    id: patch.id ?? uniqueStripeId("evt"),
    ...(patch.type ? { type: patch.type } : {}),
    ...(patch.created !== undefined ? { created: patch.created } : {}),
    data: { object: merge(fixture.data.object, patch.object ?? {}) },
  });
}

/**
 * A `charge.refunded` event: `refunded` is the charge's cumulative refunded amount (cents), as
 * Stripe reports it; `created` (epoch seconds) orders it among other events.
 */
export function chargeRefunded(input: {
  chargeId: string;
  paymentIntent: string;
  customer: string | null;
  amount: number;
  refunded: number;
  created?: number;
}): Json {
  return stripeEvent("charge.refunded", {
    ...(input.created !== undefined ? { created: input.created } : {}),
    object: {
      id: input.chargeId,
      payment_intent: input.paymentIntent,
      customer: input.customer,
      amount: input.amount,
      amount_captured: input.amount,
      amount_refunded: input.refunded,
      refunded: input.refunded === input.amount,
    },
  });
}

/** A subscription object (pinned API shape: periods on the item) for events and the test server. */
export function subscriptionObject(input: {
  id: string;
  customer: string;
  price: string;
  status?: string;
  userId: string;
  /** epoch seconds */
  periodStart?: number;
  periodEnd?: number;
  cancelAtPeriodEnd?: boolean;
  metadata?: Record<string, string>;
  latestInvoice?: string;
}): Json {
  const base = loadFixture("customer.subscription.updated").data.object;
  const [item] = base.items.data;
  return merge(base, {
    id: input.id,
    customer: input.customer,
    status: input.status ?? "active",
    cancel_at_period_end: input.cancelAtPeriodEnd ?? false,
    metadata: { userId: input.userId, ...input.metadata },
    latest_invoice: input.latestInvoice ?? uniqueStripeId("in"),
    items: {
      data: [
        merge(item, {
          id: `si_${input.id}`,
          subscription: input.id,
          price: merge(item.price, { id: input.price }),
          plan: merge(item.plan, { id: input.price }),
          ...(input.periodStart !== undefined ? { current_period_start: input.periodStart } : {}),
          ...(input.periodEnd !== undefined ? { current_period_end: input.periodEnd } : {}),
        }),
      ],
    },
  });
}

export const WEBHOOK_SECRET = "whsec_test_0123456789abcdefghijklmnopqrstuv";

/** The Stripe-Signature header for a payload, as Stripe computes it (timestamp in seconds). */
export function signatureFor(payload: string, options: { secret?: string; timestamp?: number } = {}): string {
  return Stripe.webhooks.generateTestHeaderString({
    payload,
    secret: options.secret ?? WEBHOOK_SECRET,
    ...(options.timestamp !== undefined ? { timestamp: options.timestamp } : {}),
  });
}
