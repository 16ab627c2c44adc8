import { QueryCommand } from "@aws-sdk/client-dynamodb";
import { unmarshall } from "@aws-sdk/util-dynamodb";
import { describe, expect, it } from "vitest";
import { auditAccount, authorizeChat, getBalance } from "../../lib/ledger/index.js";
import { DAY_MS } from "../../lib/periods.js";
import { createDynamoScheduleStore } from "../../lib/sweep/dynamo-schedule-store.js";
import { runSweep, SweepAbortedError, type SweepSummary } from "../../lib/sweep/run-sweep.js";
import { injectFaults, injectRandomFaults } from "../helpers/faults.js";
import { ledgerFixture, uniqueUser } from "../helpers/ledger.js";
import { seedFreeAccounts } from "../helpers/seed.js";

const plenty = () => 600_000;

/** A deterministic random source, so a failing run can be replayed. */
function seeded(seed: number) {
  let state = seed;
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

async function allowanceEntries(fx: Awaited<ReturnType<typeof ledgerFixture>>, userId: string): Promise<number> {
  const { Items = [] } = await fx.client.send(
    new QueryCommand({
      TableName: fx.tableName,
      KeyConditionExpression: "pk = :pk",
      ExpressionAttributeValues: { ":pk": { S: `U#${userId}` } },
      ConsistentRead: true,
    }),
  );
  return Items.map((item) => unmarshall(item)).filter((item) => item.reason === "allowance").length;
}

describe("the sweep under DynamoDB faults", () => {
  it("throttled index reads and faulted grants still grant every due account exactly once", async () => {
    const fx = await ledgerFixture();
    const now = fx.clock.now();
    const due = Array.from({ length: 60 }, () => uniqueUser("due"));
    const fresh = Array.from({ length: 140 }, () => uniqueUser("fresh"));
    await seedFreeAccounts(fx.client, fx.tableName, [
      ...due.map((userId) => ({ userId, createdAt: now - 31 * DAY_MS })),
      ...fresh.map((userId) => ({ userId, createdAt: now - 5 * DAY_MS })),
    ]);
    const schedule = createDynamoScheduleStore(fx.client, fx.tableName);
    const faults = injectRandomFaults(fx.client, { rate: 0.15, random: seeded(7) });
    faults.enable();
    const runs: SweepSummary[] = [];
    // A run may end with failed accounts (faults past the retries) or abort on an unreadable
    // index; like the scheduled runs, the next one picks up what is still due.
    for (let run = 0; run < 12; run++) {
      const summary = await runSweep(fx.deps, schedule, { remainingMs: plenty, concurrency: 8, pageSize: 25 }).catch(
        (error: unknown) => {
          if (!(error instanceof SweepAbortedError)) throw error;
          return error.summary;
        },
      );
      runs.push(summary);
      if (summary.complete && summary.failed === 0 && summary.due === 0) break;
    }
    faults.disable();
    expect(faults.counts.throttle + faults.counts.conflict + faults.counts.lostResponse).toBeGreaterThan(20);
    expect(faults.counts.lostResponse).toBeGreaterThan(0);
    expect(runs.at(-1)).toMatchObject({ due: 0, complete: true, failed: 0 });
    // granted counts only writes the sweep saw succeed; a lost answer is found applied on retry
    expect(runs.reduce((sum, run) => sum + run.granted, 0)).toBeLessThanOrEqual(due.length);
    for (const userId of due) expect(await allowanceEntries(fx, userId)).toBe(1);
    for (const userId of fresh.slice(0, 20)) expect(await allowanceEntries(fx, userId)).toBe(0);
    for (const userId of [...due, ...fresh.slice(0, 20)]) {
      const report = await auditAccount(fx.deps, userId);
      expect(report.problems, userId).toEqual([]);
    }
  });

  it("an index that stays unreadable ends the run with what it did, after every readable shard", async () => {
    const fx = await ledgerFixture();
    const now = fx.clock.now();
    await seedFreeAccounts(fx.client, fx.tableName, [{ userId: uniqueUser("due"), createdAt: now - 31 * DAY_MS }]);
    const faults = injectFaults(fx.client);
    faults.next("QueryCommand", "throttle", 1_000);
    const schedule = createDynamoScheduleStore(fx.client, fx.tableName);
    const error = await runSweep(fx.deps, schedule, { remainingMs: plenty }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SweepAbortedError);
    const aborted = error as SweepAbortedError;
    expect(aborted.summary).toMatchObject({ complete: false, granted: 0 });
    // every shard of both indexes was tried six times, and the throttling is kept as the cause
    expect(aborted.unreadablePages).toBe(2 * schedule.shards.length);
    expect(faults.pending()).toBe(1_000 - 6 * 2 * schedule.shards.length);
    expect(((aborted.cause as Error).cause as Error).name).toBe("ThrottlingException");
  });

  it("an unreadable grant shard does not keep abandoned holds from being released", async () => {
    const fx = await ledgerFixture();
    const userId = uniqueUser("abandoned");
    await authorizeChat(fx.deps, { userId, requestId: "r1", model: "anthropic/claude-sonnet-4.5", inputTokens: 1000, maxOutputTokens: 1000 });
    fx.clock.value += 20 * 60_000; // past the 15-minute hold expiry
    const faults = injectFaults(fx.client);
    faults.next("QueryCommand", "throttle", 6); // the first page read (grantDue, first shard) fails for good
    const error = await runSweep(fx.deps, createDynamoScheduleStore(fx.client, fx.tableName), { remainingMs: plenty }).catch(
      (caught: unknown) => caught,
    );
    expect(error).toBeInstanceOf(SweepAbortedError);
    expect((error as SweepAbortedError).unreadablePages).toBe(1);
    expect((error as SweepAbortedError).summary).toMatchObject({ released: 1, complete: false });
    expect((await getBalance(fx.deps, userId)).held).toBe(0);
  });

  it("a few throttled index reads are retried and the run completes", async () => {
    const fx = await ledgerFixture();
    const now = fx.clock.now();
    const userId = uniqueUser("due");
    await seedFreeAccounts(fx.client, fx.tableName, [{ userId, createdAt: now - 31 * DAY_MS }]);
    const faults = injectFaults(fx.client);
    faults.next("QueryCommand", "throttle", 3);
    const summary = await runSweep(fx.deps, createDynamoScheduleStore(fx.client, fx.tableName), { remainingMs: plenty });
    expect(faults.pending()).toBe(0);
    expect(summary).toMatchObject({ due: 1, granted: 1, failed: 0, complete: true });
    expect(await allowanceEntries(fx, userId)).toBe(1);
  });
});
