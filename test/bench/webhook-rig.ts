import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import type { APIGatewayProxyStructuredResultV2 } from "aws-lambda";
import { catalog } from "../../lib/catalog.js";
import { BILLING_DEFAULTS, type BillingDeps, createPriceBook, createStripePort, stripeClient } from "../../lib/billing/index.js";
import { createDynamoTopUpStore } from "../../lib/topup/dynamo-topup-store.js";
import { createDynamoBillingStore } from "../../lib/billing/dynamo-billing-store.js";
import { rawBodyHandler } from "../../lib/http/raw-stack.js";
import type { LedgerDeps } from "../../lib/ledger/index.js";
import { httpEvent, lambdaContext } from "../helpers/events.js";
import { TEST_PRICES } from "../helpers/prices.js";
import { chargeRefunded, signatureFor, stripeEvent, subscriptionObject, uniqueStripeId, WEBHOOK_SECRET } from "../helpers/stripe-events.js";
import { startStripeServer } from "../helpers/stripe-server.js";
import type { Meter, Units } from "./gate-rig.js";

export interface WebhookUnits {
  type: string;
  /** what the webhook answered it did (e.g. `allowance_granted`) */
  outcome: string;
  requests: number;
  units: Units;
}

/**
 * One user's Stripe life through the real webhook function (signature, receipt, apply, receipt
 * write) against a loopback Stripe server: subscribe by checkout, the first invoice paid, the
 * subscription updated, a pack bought, a refund and a dispute of a pack, a failed payment, the
 * subscription deleted. Each event's requests and capacity units are metered alone.
 */
export async function webhookUnits(client: DynamoDBClient, tableName: string, ledger: LedgerDeps, meter: Meter): Promise<WebhookUnits[]> {
  const stripe = await startStripeServer();
  try {
    const billing: BillingDeps = {
      ledger,
      store: createDynamoBillingStore(client, tableName),
      topUps: createDynamoTopUpStore(client, tableName),
      stripe: createStripePort(stripeClient("sk_test_creditgate_bench", { apiBase: stripe.url, maxNetworkRetries: 0, timeoutMs: 5_000 })),
      prices: createPriceBook(TEST_PRICES, catalog),
      appUrl: "https://app.example.com",
      webhookSecret: WEBHOOK_SECRET,
      checkoutTtlMs: BILLING_DEFAULTS.checkoutTtlMs,
      receiptTtlSeconds: BILLING_DEFAULTS.receiptTtlSeconds,
    };
    const { route } = await import("../../functions/webhook.js");
    const handler = rawBodyHandler(route, { billing });
    const context = lambdaContext();
    const rows: WebhookUnits[] = [];
    // biome-ignore lint/suspicious/noExplicitAny: Stripe events are arbitrary JSON
    const deliver = async (label: string, event: any) => {
      const payload = JSON.stringify(event);
      const request = httpEvent({ routeKey: "POST /v1/stripe/webhook", body: payload, headers: { "stripe-signature": signatureFor(payload), "content-type": "application/json" } });
      meter.reset();
      const answer = (await handler(request, context)) as APIGatewayProxyStructuredResultV2;
      const json = JSON.parse(answer.body ?? "{}");
      if (answer.statusCode !== 200) throw new Error(`webhook ${label}: ${answer.statusCode} ${answer.body}`);
      rows.push({ type: label, outcome: String(json.outcome), requests: meter.total(), units: meter.units() });
      return json;
    };

    const now = Math.floor(Date.now() / 1000);
    const userId = `wh-${process.pid}`;
    const customer = uniqueStripeId("cus");
    const subscriptionId = uniqueStripeId("sub");
    const invoiceId = uniqueStripeId("in");
    const price = TEST_PRICES.STRIPE_PRICE_PRO_MONTHLY;
    const subscription = subscriptionObject({
      id: subscriptionId,
      customer,
      price,
      userId,
      periodStart: now,
      periodEnd: now + 31 * 86_400,
      latestInvoice: invoiceId,
      metadata: { plan: "pro", interval: "month" },
    });
    stripe.subscriptions.set(subscriptionId, subscription);
    await deliver(
      "checkout.session.completed (subscription)",
      stripeEvent("checkout.session.completed.subscription", {
        created: now,
        object: { id: uniqueStripeId("cs"), customer, subscription: subscriptionId, metadata: { userId, plan: "pro", interval: "month" } },
      }),
    );
    await deliver(
      "invoice.paid (first invoice: allowance grant)",
      stripeEvent("invoice.paid", {
        created: now + 1,
        object: {
          id: invoiceId,
          customer,
          billing_reason: "subscription_create",
          amount_paid: 4_900,
          parent: { subscription_details: { subscription: subscriptionId, metadata: { userId } } },
          lines: {
            data: [
              {
                ...stripeEvent("invoice.paid").data.object.lines.data[0],
                invoice: invoiceId,
                subscription: subscriptionId,
                parent: { subscription_item_details: { subscription: subscriptionId, proration: false } },
                pricing: { price_details: { price } },
                period: { start: now, end: now + 31 * 86_400 },
              },
            ],
          },
        },
      }),
    );
    await deliver(
      "customer.subscription.updated (cancel at period end)",
      stripeEvent("customer.subscription.updated", { created: now + 2, object: { ...subscription, cancel_at_period_end: true } }),
    );
    const packs = [1, 2].map(() => ({ session: uniqueStripeId("cs"), paymentIntent: uniqueStripeId("pi"), charge: uniqueStripeId("ch") }));
    for (const [i, pack] of packs.entries()) {
      await deliver(
        `checkout.session.completed (pack${i === 0 ? "" : ", again"})`,
        stripeEvent("checkout.session.completed.payment", {
          created: now + 3 + i,
          object: { id: pack.session, customer, payment_intent: pack.paymentIntent, amount_total: 1_000, metadata: { userId, pack: "starter" } },
        }),
      );
    }
    const [refunded, disputed] = packs as [(typeof packs)[0], (typeof packs)[0]];
    await deliver(
      "charge.refunded (a pack, in full)",
      chargeRefunded({ chargeId: refunded.charge, paymentIntent: refunded.paymentIntent, customer, amount: 1_000, refunded: 1_000, created: now + 5 }),
    );
    await deliver(
      "charge.dispute.created (a pack)",
      stripeEvent("charge.dispute.created", {
        created: now + 6,
        object: { id: uniqueStripeId("dp"), charge: disputed.charge, payment_intent: disputed.paymentIntent, amount: 1_000 },
      }),
    );
    await deliver(
      "invoice.payment_failed",
      stripeEvent("invoice.payment_failed", {
        created: now + 7,
        object: { id: uniqueStripeId("in"), customer, parent: { subscription_details: { subscription: subscriptionId, metadata: { userId } } } },
      }),
    );
    await deliver(
      "customer.subscription.deleted",
      stripeEvent("customer.subscription.deleted", { created: now + 8, object: { ...subscription, status: "canceled" } }),
    );
    return rows;
  } finally {
    await stripe.close();
  }
}
