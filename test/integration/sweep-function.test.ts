import type { ScheduledEvent } from "aws-lambda";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { createDynamoBillingStore } from "../../lib/billing/dynamo-billing-store.js";
import { createPriceBook } from "../../lib/billing/index.js";
import { catalog } from "../../lib/catalog.js";
import { createDynamoLedgerStore } from "../../lib/ledger/dynamo-ledger-store.js";
import { authorizeChat, getBalance, LEDGER_DEFAULTS } from "../../lib/ledger/index.js";
import { DAY_MS } from "../../lib/periods.js";
import { createDynamoScheduleStore } from "../../lib/sweep/dynamo-schedule-store.js";
import { SweepAbortedError } from "../../lib/sweep/run-sweep.js";
import { freshTable, localClient } from "../helpers/dynamo.js";
import { injectFaults } from "../helpers/faults.js";
import { lambdaContext } from "../helpers/events.js";
import { captureLogs } from "../helpers/logs.js";
import { seedFreeAccounts } from "../helpers/seed.js";
import { invoicePaid, TEST_PRICES } from "../helpers/billing.js";
import { uniqueStripeId } from "../helpers/stripe-events.js";

const logs = captureLogs();
// biome-ignore lint/suspicious/noExplicitAny: the module is imported after its environment is set
let sweepModule: any;
let table: string;

beforeAll(async () => {
  const { client, tableName } = await freshTable("sweepfn");
  table = tableName;
  const now = Date.now();
  await seedFreeAccounts(client, tableName, [
    { userId: "due-1", createdAt: now - 31 * DAY_MS },
    { userId: "due-2", createdAt: now - 45 * DAY_MS },
    { userId: "not-due", createdAt: now - 3 * DAY_MS },
  ]);
  // An abandoned chat: a hold opened 20 minutes ago (past the 15-minute expiry) and never settled.
  await authorizeChat(
    {
      store: createDynamoLedgerStore(client, tableName),
      now: () => now - 20 * 60_000,
      holdTtlMs: LEDGER_DEFAULTS.holdTtlMs,
      maxOpenHolds: LEDGER_DEFAULTS.maxOpenHolds,
      authorizeRateLimitPerMinute: 0,
      catalog,
    },
    { userId: "not-due", requestId: "abandoned", model: "anthropic/claude-sonnet-4.5", inputTokens: 1000, maxOutputTokens: 1000 },
  );
  // The sweep's config profile needs only the table: no JWT secret, no APP_URL (least privilege).
  vi.stubEnv("TABLE_NAME", tableName);
  vi.stubEnv("DYNAMODB_ENDPOINT", inject("dynamoEndpoint"));
  vi.stubEnv("AWS_REGION", "local");
  vi.stubEnv("AUTH_JWT_SECRET", "");
  vi.stubEnv("APP_URL", "");
  vi.stubEnv("POWERTOOLS_METRICS_NAMESPACE", "creditgate");
  // what infra/constructs/functions.ts gives it for parked-event retries: price ids (no Stripe key needed here)
  for (const [name, value] of Object.entries(TEST_PRICES)) vi.stubEnv(name, value);
  vi.stubEnv("PARKED_EVENT_RETRIES_PER_SWEEP", "5");
  sweepModule = await import("../../functions/monthly-grant-sweep.js");
});

afterAll(() => {
  vi.unstubAllEnvs();
});

const scheduled = { "detail-type": "Scheduled Event", source: "aws.events", time: new Date().toISOString() } as ScheduledEvent;

describe("monthly-grant-sweep function", () => {
  it("grants the due accounts, logs a JSON summary and emits metrics", async () => {
    const context = { ...lambdaContext(), getRemainingTimeInMillis: () => 290_000 };
    const summary = await sweepModule.handler(scheduled, context);
    // due counts what both indexes held: two allowances and one expired hold
    expect(summary).toEqual({
      due: 3,
      granted: 2,
      skipped: 0,
      released: 1,
      failed: 0,
      complete: true,
      parked: { retried: 0, resolved: 0, stillParked: 0, failed: 0 },
    });
    const lines = logs.lines();
    const logged = lines.find((line) => line.message === "sweep summary");
    expect(logged?.summary).toEqual(summary);
    const emf = lines.find((line) => typeof line._aws === "object");
    expect(emf).toMatchObject({
      SweepDue: 3,
      SweepGranted: 2,
      SweepSkipped: 0,
      SweepReleased: 1,
      SweepFailed: 0,
      SweepIncomplete: 0,
      SweepParkedRetried: 0,
      SweepParkedResolved: 0,
      SweepParkedFailed: 0,
      service: "creditgate",
    });
    // the alarms in infra/constructs/alarms.ts watch this namespace and the `service` dimension
    const aws = emf?._aws as { CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[] };
    const [directive] = aws.CloudWatchMetrics;
    expect(directive?.Namespace).toBe("creditgate");
    expect(directive?.Dimensions).toEqual([["service"]]);
    expect(directive?.Metrics.map((metric) => metric.Name).sort()).toEqual(
      ["SweepDue", "SweepFailed", "SweepGranted", "SweepIncomplete", "SweepParkedFailed", "SweepParkedResolved", "SweepParkedRetried", "SweepReleased", "SweepSkipped"],
    );
  });

  it("stops before the deadline and reports itself incomplete", async () => {
    const context = { ...lambdaContext(), getRemainingTimeInMillis: () => 5_000 };
    const summary = await sweepModule.handler(scheduled, context);
    expect(summary).toMatchObject({ complete: false, granted: 0 });
    const emf = logs.lines().find((line) => typeof line._aws === "object");
    expect(emf).toMatchObject({ SweepIncomplete: 1 });
  });

  it("fails the invocation when the due index cannot be read, after logging what it did", async () => {
    const client = localClient();
    const faults = injectFaults(client);
    faults.next("QueryCommand", "throttle", 100);
    const ledger = { store: createDynamoLedgerStore(client, table), now: Date.now, holdTtlMs: LEDGER_DEFAULTS.holdTtlMs, maxOpenHolds: 8, authorizeRateLimitPerMinute: 0, catalog };
    const context = { ...lambdaContext(), getRemainingTimeInMillis: () => 290_000 };
    const billing = { ledger, store: createDynamoBillingStore(client, table), stripe: undefined, prices: createPriceBook(TEST_PRICES, catalog), appUrl: "", webhookSecret: undefined, checkoutTtlMs: 0, receiptTtlSeconds: 60 };
    const deps = { ledger, schedule: createDynamoScheduleStore(client, table), billing, parkedRetriesPerRun: 5 };
    await expect(sweepModule.sweep(deps, context)).rejects.toBeInstanceOf(SweepAbortedError);
    const aborted = logs.lines().find((line) => line.message === "sweep aborted");
    expect(aborted).toMatchObject({ level: "WARN", summary: { complete: false, granted: 0 } });
  });

  it("retries a due parked Stripe event with the config it was given, and reports it", async () => {
    const client = localClient();
    const store = createDynamoBillingStore(client, table);
    const userId = "parked-user";
    const customer = uniqueStripeId("cus");
    const event = invoicePaid({ invoiceId: uniqueStripeId("in"), customer, subscriptionId: uniqueStripeId("sub"), userId: "", price: TEST_PRICES.STRIPE_PRICE_PLUS_MONTHLY });
    // parked by the webhook while the customer was unknown; its next attempt is due; the mapping exists now
    await store.parkEvent({ eventId: event.id, type: event.type, reason: "unknown_customer", payload: JSON.stringify(event), customer, nextAttemptAt: Date.now() - 1 }, Date.now() - 10 * 60_000);
    await store.putCustomerUser(customer, userId, Date.now());
    const context = { ...lambdaContext(), getRemainingTimeInMillis: () => 290_000 };
    const summary = await sweepModule.handler(scheduled, context);
    expect(summary.parked).toEqual({ retried: 1, resolved: 1, stillParked: 0, failed: 0 });
    expect(await store.getParkedEvent(event.id)).toMatchObject({ status: "resolved", outcome: "allowance_granted" });
    const ledger = { store: createDynamoLedgerStore(client, table), now: Date.now, holdTtlMs: LEDGER_DEFAULTS.holdTtlMs, maxOpenHolds: 8, authorizeRateLimitPerMinute: 0, catalog };
    expect((await getBalance(ledger, userId)).balance).toBe(10_000 + 40_000);
    expect(logs.lines().find((line) => line.message === "sweep summary")?.summary).toEqual(summary);
    // (the EMF values may be arrays here: the previous test's direct sweep() call left its metrics unflushed)
    const emf = logs.lines().find((line) => typeof line._aws === "object");
    expect([emf?.SweepParkedRetried].flat().at(-1)).toBe(1);
    expect([emf?.SweepParkedResolved].flat().at(-1)).toBe(1);
    // the next run finds nothing due
    expect((await sweepModule.handler(scheduled, context)).parked.retried).toBe(0);
  });
});
