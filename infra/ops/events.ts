import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import {
  type BillingDeps,
  BILLING_DEFAULTS,
  createPriceBook,
  createStripePort,
  dismissParkedEvent,
  type ParkedEvent,
  replayParkedEvent,
  replayParkedEvents,
  stripeClient,
} from "../../lib/billing/index.js";
import { createDynamoTopUpStore } from "../../lib/topup/dynamo-topup-store.js";
import { createDynamoBillingStore } from "../../lib/billing/dynamo-billing-store.js";
import { STRIPE_PRICE_VARS } from "../../lib/config.js";
import { AppError, NotFoundError } from "../../lib/errors.js";
import type { LedgerDeps } from "../../lib/ledger/index.js";
import type { OpsIo } from "./io.js";

/**
 * `npm run ops -- events …`: the Stripe events the webhook parked (lib/billing/parked.ts).
 *
 *   events list [--reason R] [--all]        parked ones (--all: resolved and dismissed too)
 *   events show <evt_…>                     the record and the event as Stripe sent it
 *   events replay <evt_…> | --all           apply again through the webhook's own path (idempotent)
 *   events dismiss <evt_…> --reason "why"   will never apply: kept, marked dismissed
 *
 * Replaying needs what the webhook function has: STRIPE_SECRET_KEY (and STRIPE_API_BASE), the
 * STRIPE_PRICE_* ids; run it with the same environment (docs/operations.md, "Parked Stripe events").
 */
export function billingDepsFromEnv(env: NodeJS.ProcessEnv, ledger: LedgerDeps, client: DynamoDBClient, tableName: string): BillingDeps {
  const prices = Object.fromEntries(STRIPE_PRICE_VARS.flatMap((name) => (env[name] ? [[name, env[name]]] : [])));
  return {
    ledger,
    store: createDynamoBillingStore(client, tableName),
    topUps: createDynamoTopUpStore(client, tableName),
    stripe: env.STRIPE_SECRET_KEY
      ? createStripePort(stripeClient(env.STRIPE_SECRET_KEY, { ...(env.STRIPE_API_BASE ? { apiBase: env.STRIPE_API_BASE } : {}), maxNetworkRetries: 2 }))
      : undefined,
    prices: createPriceBook(prices, ledger.catalog),
    appUrl: "",
    webhookSecret: undefined,
    checkoutTtlMs: BILLING_DEFAULTS.checkoutTtlMs,
    receiptTtlSeconds: BILLING_DEFAULTS.receiptTtlSeconds,
  };
}

const age = (now: number, since: number) => {
  const minutes = Math.floor((now - since) / 60_000);
  return minutes < 120 ? `${minutes}m` : minutes < 2_880 ? `${Math.floor(minutes / 60)}h` : `${Math.floor(minutes / 1_440)}d`;
};

const line = (event: ParkedEvent, now: number) =>
  `${event.eventId}  ${event.type.padEnd(38)} ${event.reason.padEnd(26)} ${event.status.padEnd(9)} age ${age(now, event.firstSeenAt).padStart(4)}  attempts ${event.attempts}`;

export async function runEventsCommand(
  args: { sub: string | undefined; eventId: string | undefined; reason: string | undefined; all: boolean },
  billing: BillingDeps,
  io: OpsIo,
): Promise<number> {
  const now = billing.ledger.now();
  switch (args.sub) {
    case "list": {
      const events = (await billing.store.listParkedEvents())
        .filter((event) => args.all || event.status === "parked")
        .filter((event) => args.reason === undefined || event.reason === args.reason)
        .sort((a, b) => a.firstSeenAt - b.firstSeenAt);
      for (const event of events) io.out(line(event, now));
      io.out(`${events.length} event(s)${args.all ? "" : " parked"}`);
      return 0;
    }
    case "show": {
      if (!args.eventId) throw new AppError(400, "USAGE", "events show <evt_…>");
      const event = await billing.store.getParkedEvent(args.eventId);
      if (!event) throw new NotFoundError(`no parked event ${args.eventId}`);
      io.out(JSON.stringify({ ...event, payload: JSON.parse(event.payload) }, null, 2));
      return 0;
    }
    case "replay": {
      const results = args.all
        ? await replayParkedEvents(billing, args.reason === undefined ? {} : { reason: args.reason })
        : args.eventId
          ? [await replayParkedEvent(billing, args.eventId)]
          : undefined;
      if (!results) throw new AppError(400, "USAGE", "events replay <evt_…> | events replay --all [--reason R]");
      for (const result of results) {
        io.out(
          result.result === "resolved"
            ? `${result.eventId} resolved: ${result.outcome}`
            : result.result === "still_parked"
              ? `${result.eventId} still parked: ${result.reason}`
              : `${result.eventId} not parked (${result.status}): nothing done`,
        );
      }
      const stillParked = results.filter((result) => result.result === "still_parked").length;
      io.out(`${results.length} replayed, ${stillParked} still parked`);
      return stillParked === 0 ? 0 : 1;
    }
    case "dismiss": {
      if (!args.eventId || !args.reason) throw new AppError(400, "USAGE", 'events dismiss <evt_…> --reason "why"');
      if (!(await dismissParkedEvent(billing, args.eventId, args.reason.slice(0, 500)))) {
        throw new NotFoundError(`${args.eventId} is not a parked event (nothing was changed)`);
      }
      io.out(`${args.eventId} dismissed`);
      return 0;
    }
    default:
      throw new AppError(400, "USAGE", "events list|show|replay|dismiss (see infra/ops/events.ts)");
  }
}
