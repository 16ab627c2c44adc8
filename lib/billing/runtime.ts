import type { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { type Config, config } from "../config.js";
import type { LedgerDeps } from "../ledger/index.js";
import { type AppDeps, buildAppDeps, dynamoClient, ledgerDeps, sweepLedgerDeps } from "../runtime.js";
import type { ScheduleStore } from "../sweep/schedule-store.js";
import { BILLING_DEFAULTS, type BillingDeps } from "./deps.js";
import { createDynamoBillingStore } from "./dynamo-billing-store.js";
import { createDynamoTopUpStore } from "../topup/dynamo-topup-store.js";
import { priceBookFromConfig } from "./prices.js";
import { createStripePort, stripeClient } from "./stripe-port.js";

/**
 * The billing functions' deps (subscribe, portal, webhook). Kept apart from lib/runtime so the
 * gate and credits bundles do not carry the Stripe SDK. Missing Stripe keys do not fail the cold
 * start: the routes answer 503 STRIPE_NOT_CONFIGURED, naming what is missing.
 */
export interface BillingAppDeps extends AppDeps {
  billing: BillingDeps;
}

export function billingDeps(cfg: Config, ledger: LedgerDeps, client: DynamoDBClient): BillingDeps {
  return {
    ledger,
    store: createDynamoBillingStore(client, cfg.TABLE_NAME),
    topUps: createDynamoTopUpStore(client, cfg.TABLE_NAME),
    stripe: cfg.STRIPE_SECRET_KEY
      ? createStripePort(stripeClient(cfg.STRIPE_SECRET_KEY, { apiBase: cfg.STRIPE_API_BASE, maxNetworkRetries: 2 }))
      : undefined,
    prices: priceBookFromConfig(cfg, ledger.catalog),
    // Only the webhook runs without APP_URL (config profile "webhook"); it never builds URLs.
    appUrl: cfg.APP_URL ?? "",
    webhookSecret: cfg.STRIPE_WEBHOOK_SECRET,
    checkoutTtlMs: BILLING_DEFAULTS.checkoutTtlMs,
    receiptTtlSeconds: BILLING_DEFAULTS.receiptTtlSeconds,
  };
}

export function buildBillingAppDeps(cfg: Config, client: DynamoDBClient = dynamoClient(cfg)): BillingAppDeps {
  const app = buildAppDeps(cfg, client);
  return { ...app, billing: billingDeps(cfg, app.ledger, client) };
}

let cached: BillingAppDeps | undefined;

/** The container's billing deps: config validated and clients created on first call (cold start). */
export function billingAppDeps(): BillingAppDeps {
  cached ??= buildBillingAppDeps(config());
  return cached;
}

let webhookCached: { billing: BillingDeps } | undefined;

/**
 * The webhook's deps: the "webhook" config profile (no JWT secret, no APP_URL — the webhook is
 * authenticated by Stripe's signature and is not given the JWT secret) and no authenticator.
 */
export function webhookDeps(): { billing: BillingDeps } {
  if (!webhookCached) {
    const cfg = config("webhook");
    const client = dynamoClient(cfg);
    webhookCached = { billing: billingDeps(cfg, ledgerDeps(cfg, client), client) };
  }
  return webhookCached;
}

let topUpCached: { billing: BillingDeps } | undefined;

/**
 * Auto top-up's deps (functions/auto-topup.ts), from the "topup" config profile: the table, the
 * Stripe key and the pack price ids; no JWT secret, no APP_URL (it answers no request).
 */
export function topUpDeps(): { billing: BillingDeps } {
  if (!topUpCached) {
    const cfg = config("topup");
    const client = dynamoClient(cfg);
    topUpCached = { billing: billingDeps(cfg, ledgerDeps(cfg, client), client) };
  }
  return topUpCached;
}

/** What the scheduled sweep works with: the ledger's due indexes, and billing for the parked Stripe events it retries. */
export interface SweepDeps {
  ledger: LedgerDeps;
  schedule: ScheduleStore;
  billing: BillingDeps;
  /** at most this many parked events retried per run (PARKED_EVENT_RETRIES_PER_SWEEP) */
  parkedRetriesPerRun: number;
}

/**
 * The sweep's deps, from the "sweep" config profile: no JWT secret, no APP_URL; the Stripe key and
 * price ids the webhook has (infra/constructs/functions.ts gives it both), so its retries apply as the webhook would.
 */
export function sweepDeps(cfg: Config = config("sweep")): SweepDeps {
  const client = dynamoClient(cfg);
  const { ledger, schedule } = sweepLedgerDeps(cfg, client);
  return { ledger, schedule, billing: billingDeps(cfg, ledger, client), parkedRetriesPerRun: cfg.PARKED_EVENT_RETRIES_PER_SWEEP };
}
