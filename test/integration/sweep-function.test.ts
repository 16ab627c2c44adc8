import type { ScheduledEvent } from "aws-lambda";
import { afterAll, beforeAll, describe, expect, inject, it, vi } from "vitest";
import { DAY_MS } from "../../lib/periods.js";
import { freshTable } from "../helpers/dynamo.js";
import { lambdaContext } from "../helpers/events.js";
import { captureLogs } from "../helpers/logs.js";
import { seedFreeAccounts } from "../helpers/seed.js";

const logs = captureLogs();
// biome-ignore lint/suspicious/noExplicitAny: the module is imported after its environment is set
let sweepModule: any;

beforeAll(async () => {
  const { client, tableName } = await freshTable("sweepfn");
  const now = Date.now();
  await seedFreeAccounts(client, tableName, [
    { userId: "due-1", createdAt: now - 31 * DAY_MS },
    { userId: "due-2", createdAt: now - 45 * DAY_MS },
    { userId: "not-due", createdAt: now - 3 * DAY_MS },
  ]);
  // The sweep's config profile needs only the table: no JWT secret, no APP_URL (least privilege).
  vi.stubEnv("TABLE_NAME", tableName);
  vi.stubEnv("DYNAMODB_ENDPOINT", inject("dynamoEndpoint"));
  vi.stubEnv("AWS_REGION", "local");
  vi.stubEnv("AUTH_JWT_SECRET", "");
  vi.stubEnv("APP_URL", "");
  vi.stubEnv("POWERTOOLS_METRICS_NAMESPACE", "creditgate");
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
    expect(summary).toMatchObject({ due: 2, granted: 2, skipped: 0, failed: 0, complete: true });
    const lines = logs.lines();
    const logged = lines.find((line) => line.message === "sweep summary");
    expect(logged?.summary).toMatchObject({ granted: 2, due: 2 });
    const emf = lines.find((line) => typeof line._aws === "object");
    expect(emf).toMatchObject({ SweepGranted: 2, SweepDue: 2, SweepFailed: 0, SweepIncomplete: 0 });
  });

  it("stops before the deadline and reports itself incomplete", async () => {
    const context = { ...lambdaContext(), getRemainingTimeInMillis: () => 5_000 };
    const summary = await sweepModule.handler(scheduled, context);
    expect(summary).toMatchObject({ complete: false, granted: 0 });
    const emf = logs.lines().find((line) => typeof line._aws === "object");
    expect(emf).toMatchObject({ SweepIncomplete: 1 });
  });
});
