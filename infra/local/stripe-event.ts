/**
 * `npm run stripe:event -- <type> --user <id> [options]`: signs a realistic Stripe event (built
 * from test/fixtures/stripe, shaped like the SDK's pinned API version) with the local webhook
 * secret and posts it to the running local stack, so every billing flow can be tried offline.
 *
 *   checkout.session.completed --pack starter|pro|enterprise     pays for a credit pack
 *   customer.subscription.created|updated|deleted [--plan pro] [--interval month|year] [--status active]
 *   invoice.paid [--plan pro] [--interval month] [--reason subscription_create|subscription_cycle]
 *   invoice.payment_failed
 *   charge.refunded --pack starter [--amount <cents refunded>]   refunds a pack bought with this tool
 *   charge.dispute.created --pack starter
 *
 * Options: --url (default http://127.0.0.1:$PORT or 3001), --secret (default STRIPE_WEBHOOK_SECRET,
 * else the one `npm start` keeps in .local/dev-secrets.json), --id <suffix> to name the payment.
 */
import { existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { merge, signatureFor, stripeEvent, subscriptionObject } from "../../test/helpers/stripe-events.js";
import { devPrices } from "./dev-prices.js";
import { isMain } from "./is-main.js";

const PACK_CENTS: Record<string, number> = { starter: 1_000, pro: 3_500, enterprise: 15_000 };

export interface StripeEventOptions {
  type: string;
  user: string;
  plan?: string;
  interval?: string;
  status?: string;
  reason?: string;
  pack?: string;
  amount?: number;
  id?: string;
}

const localIds = (user: string, suffix: string) => ({
  customer: `cus_local_${user.replace(/[^A-Za-z0-9]/g, "")}`,
  subscription: `sub_local_${user.replace(/[^A-Za-z0-9]/g, "")}`,
  session: `cs_local_${suffix}`,
  paymentIntent: `pi_local_${suffix}`,
  charge: `ch_local_${suffix}`,
});

/** Builds the event object for a type, or throws with what is missing. */
// biome-ignore lint/suspicious/noExplicitAny: Stripe events are arbitrary JSON here
export function buildLocalEvent(options: StripeEventOptions, env: NodeJS.ProcessEnv): any {
  const now = Math.floor(Date.now() / 1000);
  const suffix = options.id ?? `${options.user.replace(/[^A-Za-z0-9]/g, "")}${options.pack ?? ""}`;
  const ids = localIds(options.user, suffix);
  const prices = devPrices(env);
  const plan = options.plan ?? "pro";
  const interval = options.interval ?? "month";
  const price = prices[`STRIPE_PRICE_${plan.toUpperCase()}_${interval === "year" ? "YEARLY" : "MONTHLY"}`];
  const metadata = { userId: options.user };
  const needPack = () => {
    if (!options.pack || !(options.pack in PACK_CENTS)) throw new Error("--pack starter|pro|enterprise is required for this event");
    return options.pack;
  };
  const periodEnd = now + (interval === "year" ? 365 : 30) * 86_400;
  switch (options.type) {
    case "checkout.session.completed": {
      const pack = needPack();
      return stripeEvent("checkout.session.completed.payment", {
        created: now,
        object: {
          id: ids.session,
          customer: ids.customer,
          client_reference_id: options.user,
          metadata: { ...metadata, pack },
          payment_intent: ids.paymentIntent,
          payment_status: "paid",
          amount_total: PACK_CENTS[pack],
        },
      });
    }
    case "customer.subscription.created":
    case "customer.subscription.updated":
    case "customer.subscription.deleted": {
      if (!price) throw new Error(`no price for --plan ${plan} --interval ${interval}`);
      const status = options.status ?? (options.type.endsWith("deleted") ? "canceled" : "active");
      return merge(stripeEvent(options.type as "customer.subscription.created", { created: now }), {
        data: {
          object: subscriptionObject({
            id: ids.subscription,
            customer: ids.customer,
            price,
            userId: options.user,
            status,
            periodStart: now,
            periodEnd,
            metadata: { plan, interval },
          }),
        },
      });
    }
    case "invoice.paid":
    case "invoice.payment_failed": {
      if (!price) throw new Error(`no price for --plan ${plan} --interval ${interval}`);
      const invoice = `in_local_${options.id ?? now}`;
      const base = stripeEvent(options.type as "invoice.paid", { created: now });
      const [line] = base.data.object.lines.data;
      return merge(base, {
        data: {
          object: {
            id: invoice,
            customer: ids.customer,
            billing_reason: options.reason ?? "subscription_create",
            parent: { subscription_details: { subscription: ids.subscription, metadata } },
            lines: {
              data: [
                merge(line, {
                  invoice,
                  subscription: ids.subscription,
                  parent: { subscription_item_details: { subscription: ids.subscription, proration: false } },
                  pricing: { price_details: { price } },
                }),
              ],
            },
          },
        },
      });
    }
    case "charge.refunded": {
      const pack = needPack();
      const paid = PACK_CENTS[pack] as number;
      return stripeEvent("charge.refunded", {
        created: now,
        object: {
          id: ids.charge,
          customer: ids.customer,
          payment_intent: ids.paymentIntent,
          amount: paid,
          amount_captured: paid,
          amount_refunded: Math.min(paid, options.amount ?? paid),
          refunded: (options.amount ?? paid) >= paid,
          metadata,
        },
      });
    }
    case "charge.dispute.created": {
      const pack = needPack();
      return stripeEvent("charge.dispute.created", {
        created: now,
        object: { id: `dp_local_${suffix}`, charge: ids.charge, payment_intent: ids.paymentIntent, amount: PACK_CENTS[pack] },
      });
    }
    default:
      throw new Error(`unsupported event type ${options.type}`);
  }
}

function webhookSecret(env: NodeJS.ProcessEnv, explicit?: string): string {
  if (explicit) return explicit;
  if (env.STRIPE_WEBHOOK_SECRET) return env.STRIPE_WEBHOOK_SECRET;
  const file = `${env.CREDITGATE_DATA_DIR || ".local"}/dev-secrets.json`;
  if (existsSync(file)) return JSON.parse(readFileSync(file, "utf8")).STRIPE_WEBHOOK_SECRET;
  throw new Error("no webhook secret: set STRIPE_WEBHOOK_SECRET to the one `npm start` uses (or run it without --in-memory)");
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      user: { type: "string", default: "dev-user" },
      plan: { type: "string" },
      interval: { type: "string" },
      status: { type: "string" },
      reason: { type: "string" },
      pack: { type: "string" },
      amount: { type: "string" },
      id: { type: "string" },
      url: { type: "string" },
      secret: { type: "string" },
    },
  });
  const [type] = positionals;
  if (!type) {
    console.error("usage: npm run stripe:event -- <event type> --user <id> [--pack p] [--plan p] [--interval i] (see infra/local/stripe-event.ts)");
    return 2;
  }
  const event = buildLocalEvent(
    {
      type,
      user: values.user as string,
      ...(values.plan ? { plan: values.plan } : {}),
      ...(values.interval ? { interval: values.interval } : {}),
      ...(values.status ? { status: values.status } : {}),
      ...(values.reason ? { reason: values.reason } : {}),
      ...(values.pack ? { pack: values.pack } : {}),
      ...(values.amount ? { amount: Number(values.amount) } : {}),
      ...(values.id ? { id: values.id } : {}),
    },
    process.env,
  );
  const payload = JSON.stringify(event);
  const url = values.url ?? `http://127.0.0.1:${process.env.PORT ?? 3001}`;
  const response = await fetch(`${url}/v1/stripe/webhook`, {
    method: "POST",
    headers: { "content-type": "application/json", "stripe-signature": signatureFor(payload, { secret: webhookSecret(process.env, values.secret) }) },
    body: payload,
  });
  console.log(`${type} ${event.id} → ${response.status} ${await response.text()}`);
  return response.ok ? 0 : 1;
}

if (isMain(import.meta.url)) {
  main().then(
    (code) => process.exit(code),
    (error: Error) => {
      console.error(`stripe:event: ${error.message}`);
      process.exit(error.message.includes("ECONNREFUSED") || (error as { cause?: { code?: string } }).cause?.code === "ECONNREFUSED" ? 3 : 1);
    },
  );
}
