import { readFileSync } from "node:fs";
import { merge, stripeEvent, uniqueStripeId } from "./stripe-events.js";

/**
 * Events about a refund or a dispute going back to the merchant, built from the fixtures of
 * Stripe's own `refund` and `dispute` objects (test/fixtures/stripe/NOTICE.md) with per-test ids,
 * amounts, statuses and times patched in.
 */

// biome-ignore lint/suspicious/noExplicitAny: Stripe events are arbitrary JSON
type Json = any;

type ReversalFixture = "charge.refund.updated" | "refund.failed" | "charge.dispute.closed";

function fixtureEvent(name: ReversalFixture, patch: { created?: number; object: Json }): Json {
  const fixture = JSON.parse(readFileSync(new URL(`../fixtures/stripe/${name}.json`, import.meta.url), "utf8"));
  return merge(fixture, {
    id: uniqueStripeId("evt"),
    ...(patch.created !== undefined ? { created: patch.created } : {}),
    data: { object: merge(fixture.data.object, patch.object) },
  });
}

export interface RefundInput {
  refundId: string;
  chargeId: string;
  paymentIntent: string;
  amount: number;
  /** when the refund was created (epoch s): the charge.refunded events from then on count it */
  refundCreated: number;
  status?: "failed" | "canceled" | "succeeded" | "pending";
  /** event time (epoch s): when it failed, was canceled or changed */
  created: number;
}

/** charge.refund.updated or refund.failed about one refund of a charge. */
export function refundEvent(type: "charge.refund.updated" | "refund.failed", input: RefundInput): Json {
  const status = input.status ?? "failed";
  return fixtureEvent(type, {
    created: input.created,
    object: {
      id: input.refundId,
      charge: input.chargeId,
      payment_intent: input.paymentIntent,
      amount: input.amount,
      created: input.refundCreated,
      status,
      ...(status === "failed" ? {} : { failure_reason: null, failure_balance_transaction: null }),
    },
  });
}

export interface DisputeInput {
  disputeId: string;
  chargeId: string;
  paymentIntent: string;
  amount: number;
  /** event time (epoch s) */
  created?: number;
}

export function disputeCreated(input: DisputeInput): Json {
  return stripeEvent("charge.dispute.created", {
    ...(input.created !== undefined ? { created: input.created } : {}),
    object: { id: input.disputeId, charge: input.chargeId, payment_intent: input.paymentIntent, amount: input.amount },
  });
}

/** charge.dispute.closed: won, lost, or warning_closed (an inquiry closed without funds withdrawn). */
export function disputeClosed(input: DisputeInput & { status: "won" | "lost" | "warning_closed" }): Json {
  return fixtureEvent("charge.dispute.closed", {
    ...(input.created !== undefined ? { created: input.created } : {}),
    object: { id: input.disputeId, charge: input.chargeId, payment_intent: input.paymentIntent, amount: input.amount, status: input.status },
  });
}
