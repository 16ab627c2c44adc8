import { BatchGetItemCommand, ScanCommand } from "@aws-sdk/client-dynamodb";
import { marshall, unmarshall } from "@aws-sdk/util-dynamodb";
import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  auditAccount,
  authorizeChat,
  changePlanSchedule,
  ensureAccount,
  getBalance,
  listHistory,
  settleChat,
} from "../../lib/ledger/index.js";
import { DAY_MS, periodStart } from "../../lib/periods.js";
import { createDynamoScheduleStore } from "../../lib/sweep/dynamo-schedule-store.js";
import { runSweep } from "../../lib/sweep/run-sweep.js";
import { ledgerFixture, payAnnualYear, START, uniqueUser } from "../helpers/ledger.js";
import { seedFreeAccounts } from "../helpers/seed.js";

const plenty = () => 600_000;

async function balancesOf(fx: Awaited<ReturnType<typeof ledgerFixture>>, userIds: string[]) {
  const balances = new Map<string, number>();
  for (let i = 0; i < userIds.length; i += 100) {
    const keys = userIds.slice(i, i + 100).map((userId) => marshall({ pk: `U#${userId}`, sk: "ACCOUNT" }));
    const result = await fx.client.send(new BatchGetItemCommand({ RequestItems: { [fx.tableName]: { Keys: keys } } }));
    for (const item of result.Responses?.[fx.tableName] ?? []) {
      const account = unmarshall(item);
      balances.set(account.userId, account.balance);
    }
    expect(Object.keys(result.UnprocessedKeys ?? {})).toHaveLength(0);
  }
  return balances;
}

async function countAllowanceEntries(fx: Awaited<ReturnType<typeof ledgerFixture>>): Promise<number> {
  let count = 0;
  let start: Record<string, import("@aws-sdk/client-dynamodb").AttributeValue> | undefined;
  do {
    const page = await fx.client.send(
      new ScanCommand({
        TableName: fx.tableName,
        FilterExpression: "#r = :r",
        ExpressionAttributeNames: { "#r": "reason" },
        ExpressionAttributeValues: { ":r": { S: "allowance" } },
        Select: "COUNT",
        ExclusiveStartKey: start,
      }),
    );
    count += page.Count ?? 0;
    start = page.LastEvaluatedKey;
  } while (start);
  return count;
}

describe("sweep at scale: 20,000 accounts, 2,000 due", () => {
  let fx: Awaited<ReturnType<typeof ledgerFixture>>;
  const due: string[] = [];
  const notDue: string[] = [];
  beforeAll(async () => {
    fx = await ledgerFixture();
    const accounts = Array.from({ length: 20_000 }, (_, i) => {
      const userId = `scale-${i}`;
      // Every tenth account was created 31 days ago (due); the rest 1..29 days ago.
      const isDue = i % 10 === 0;
      (isDue ? due : notDue).push(userId);
      return { userId, createdAt: START - (isDue ? 31 : 1 + (i % 29)) * DAY_MS };
    });
    await seedFreeAccounts(fx.client, fx.tableName, accounts);
  }, 240_000);

  it("grants exactly the 2,000 due accounts once; a second run grants nothing and reads little", async () => {
    const schedule = createDynamoScheduleStore(fx.client, fx.tableName);
    fx.requests.reset();
    const first = await runSweep(fx.deps, schedule, { remainingMs: plenty, concurrency: 16 });
    expect(first).toMatchObject({ due: 2_000, granted: 2_000, skipped: 0, failed: 0, complete: true });
    // Reads scale with due accounts: per due account one consistent read and one transaction,
    // plus index pages (100 keys each) — nowhere near 20,000 reads.
    const firstReads = (fx.requests.counts.get("GetItemCommand") ?? 0) + (fx.requests.counts.get("QueryCommand") ?? 0);
    expect(firstReads).toBeLessThanOrEqual(2_000 + 2_000 / 100 + 2 * 8 * 2);

    fx.requests.reset();
    const second = await runSweep(fx.deps, schedule, { remainingMs: plenty, concurrency: 16 });
    expect(second).toMatchObject({ due: 0, granted: 0, failed: 0, complete: true });
    // One empty index query per shard per index, nothing else.
    expect(Object.fromEntries(fx.requests.counts)).toEqual({ QueryCommand: 16 });

    const balances = await balancesOf(fx, [...due, ...notDue.slice(0, 500)]);
    expect(due.every((userId) => balances.get(userId) === 20_000)).toBe(true);
    expect(notDue.slice(0, 500).every((userId) => balances.get(userId) === 10_000)).toBe(true);
    expect(await countAllowanceEntries(fx)).toBe(2_000);
    for (const userId of due.slice(0, 20)) expect((await auditAccount(fx.deps, userId)).problems).toEqual([]);
  }, 240_000);
});

describe("sweep correctness", () => {
  let fx: Awaited<ReturnType<typeof ledgerFixture>>;
  let schedule: ReturnType<typeof createDynamoScheduleStore>;
  // Each test gets its own table: accounts of one test would otherwise fall due in another.
  beforeEach(async () => {
    fx = await ledgerFixture();
    schedule = createDynamoScheduleStore(fx.client, fx.tableName);
  });

  it("racing lazy grants from authorize, each period is granted once", async () => {
    fx.clock.at(0);
    const users = Array.from({ length: 40 }, () => uniqueUser("race"));
    for (const user of users) await ensureAccount(fx.deps, user);
    fx.clock.at(30);
    const [summary] = await Promise.all([
      runSweep(fx.deps, schedule, { remainingMs: plenty, concurrency: 4 }),
      ...users.map((user, i) =>
        authorizeChat(fx.deps, { userId: user, requestId: `r${i}`, model: "openai/gpt-5.2", inputTokens: 10, maxOutputTokens: 10 }),
      ),
    ]);
    const relevant = summary as Awaited<ReturnType<typeof runSweep>>;
    expect(relevant.failed).toBe(0);
    for (const user of users) {
      const allowances = (await listHistory(fx.deps, { userId: user })).entries.filter((e) => e.reason === "allowance");
      expect(allowances).toHaveLength(1);
      expect((await getBalance(fx.deps, user)).balance).toBe(20_000);
    }
  });

  it("a sweep cut off mid-way and resumed grants everyone exactly once", async () => {
    fx.clock.at(100);
    const users = Array.from({ length: 60 }, () => uniqueUser("cut"));
    for (const user of users) await ensureAccount(fx.deps, user);
    fx.clock.at(130);
    // A simulated Lambda deadline: each run may check the clock 30 times (16 index pages + items).
    let runs = 0;
    let granted = 0;
    let complete = false;
    while (!complete) {
      let budget = 30;
      const summary = await runSweep(fx.deps, schedule, {
        remainingMs: () => (budget-- > 0 ? 60_000 : 0),
        safetyMs: 1,
        concurrency: 1,
      });
      granted += summary.granted;
      complete = summary.complete;
      runs++;
      expect(runs).toBeLessThan(20);
    }
    expect(runs).toBeGreaterThan(2);
    expect(granted).toBe(60);
    for (const user of users) {
      const allowances = (await listHistory(fx.deps, { userId: user })).entries.filter((e) => e.reason === "allowance");
      expect(allowances).toHaveLength(1);
    }
  });

  it("annual plan: twelve monthly grants across a simulated year, none twice", async () => {
    fx.clock.at(200);
    const user = uniqueUser("annual");
    await ensureAccount(fx.deps, user);
    const yearStart = fx.clock.value;
    // Month 0 comes with the paid annual invoice, which pays months 1..11 too.
    await payAnnualYear(fx.deps, { userId: user, plan: "pro", anchor: yearStart, invoice: "in_annual1" });
    for (let month = 1; month <= 12; month++) {
      const boundary = periodStart(yearStart, month, { kind: "calendarMonth" });
      for (const offset of [-DAY_MS, 0, 2 * DAY_MS]) {
        fx.clock.value = boundary + offset;
        await runSweep(fx.deps, schedule, { remainingMs: plenty });
      }
    }
    // Past the renewal date, before the renewal's subscription update arrives: the schedule has
    // ended, so neither the sweep nor a lazy authorize grants "month 12" under the old anchor.
    fx.clock.value = periodStart(yearStart, 12, { kind: "calendarMonth" }) + 5 * DAY_MS;
    await runSweep(fx.deps, schedule, { remainingMs: plenty });
    await authorizeChat(fx.deps, { userId: user, requestId: "after-renewal", model: "openai/gpt-5.2", inputTokens: 10, maxOutputTokens: 10 });
    expect((await getBalance(fx.deps, user)).nextGrantAt).toBeNull();
    const entries = (await listHistory(fx.deps, { userId: user, limit: 100 })).entries;
    const monthly = entries.filter((e) => e.reason === "allowance");
    expect(monthly).toHaveLength(11);
    expect(new Set(monthly.map((e) => e.key)).size).toBe(11);
    expect(monthly.map((e) => e.refs.period).sort((a, b) => Number(a) - Number(b))).toEqual(
      Array.from({ length: 11 }, (_, i) => i + 1),
    );
    const view = await getBalance(fx.deps, user);
    expect(view.balance).toBe(10_000 + 12 * 100_000);
    expect((await auditAccount(fx.deps, user)).ok).toBe(true);

    // The renewal re-anchors the schedule; the new year's month 1 is granted once, under its own key.
    const renewal = periodStart(yearStart, 12, { kind: "calendarMonth" });
    await payAnnualYear(fx.deps, { userId: user, plan: "pro", anchor: renewal, invoice: "in_annual2" });
    fx.clock.value = periodStart(renewal, 1, { kind: "calendarMonth" }) + DAY_MS;
    await runSweep(fx.deps, schedule, { remainingMs: plenty });
    await runSweep(fx.deps, schedule, { remainingMs: plenty });
    const nextYear = (await listHistory(fx.deps, { userId: user, limit: 100 })).entries.filter(
      (e) => e.reason === "allowance" && e.createdAt >= new Date(renewal).toISOString(),
    );
    expect(nextYear).toHaveLength(1);
  });

  it("monthly paid plans are left to their invoices: the sweep never grants them", async () => {
    fx.clock.at(300);
    const user = uniqueUser("monthly");
    await ensureAccount(fx.deps, user);
    await changePlanSchedule(fx.deps, { userId: user, plan: "pro", interval: "month", periodStart: fx.clock.value });
    expect((await getBalance(fx.deps, user)).nextGrantAt).toBeNull(); // not in the grant-due index at all
    for (const days of [29, 31, 62, 95]) {
      fx.clock.value += days * DAY_MS;
      await runSweep(fx.deps, schedule, { remainingMs: plenty });
    }
    const entries = (await listHistory(fx.deps, { userId: user, limit: 100 })).entries;
    expect(entries.map((entry) => entry.reason)).toEqual(["signup"]);
    expect((await getBalance(fx.deps, user)).balance).toBe(10_000);
  });

  it("a schedule left in the past with nothing due is repaired, not spun on", async () => {
    fx.clock.at(0);
    const user = uniqueUser("stale");
    await ensureAccount(fx.deps, user);
    await changePlanSchedule(fx.deps, { userId: user, plan: "pro", interval: "month" });
    // Simulate a stale schedule on a monthly paid plan (which has none).
    await fx.deps.store.commit({ userId: user, expectedSeq: 1, entries: [], balanceDelta: 0, availableDelta: 0, set: { nextGrantAt: fx.clock.value - 1 } });
    fx.requests.reset();
    await authorizeChat(fx.deps, { userId: user, requestId: "r", model: "openai/gpt-5.2", inputTokens: 10, maxOutputTokens: 10 });
    expect(fx.requests.total()).toBeLessThanOrEqual(5);
    expect((await getBalance(fx.deps, user)).nextGrantAt).toBeNull();
    expect((await listHistory(fx.deps, { userId: user })).entries.map((e) => e.reason)).toEqual(["signup"]);
  });

  it("releases abandoned holds once, then a late settle still records the true usage", async () => {
    fx.clock.at(300);
    const user = uniqueUser("holds");
    const stale = await authorizeChat(fx.deps, { userId: user, requestId: "stale", model: "openai/gpt-5.2", inputTokens: 1000, maxOutputTokens: 1000 });
    fx.clock.value += fx.deps.holdTtlMs + 1;
    const fresh = await authorizeChat(fx.deps, { userId: user, requestId: "fresh", model: "openai/gpt-5.2", inputTokens: 1000, maxOutputTokens: 1000 });
    const [a, b] = await Promise.all([
      runSweep(fx.deps, schedule, { remainingMs: plenty }),
      runSweep(fx.deps, schedule, { remainingMs: plenty }),
    ]);
    expect((a?.released ?? 0) + (b?.released ?? 0)).toBe(1);
    expect((await getBalance(fx.deps, user)).held).toBe(fresh.reserved);
    // The true usage (6 credits) is below the 18 reserved: the late settle must charge 6, not 18.
    const late = await settleChat(fx.deps, { holdId: stale.holdId, inputTokens: 1000, outputTokens: 200 });
    expect(late).toMatchObject({ status: "settled", charged: 6, released: 0, balance: 10_000 - 6 });
    expect(await getBalance(fx.deps, user)).toMatchObject({ balance: 10_000 - 6, held: fresh.reserved });
    // The account stays in the hold index for the open hold only; once it is settled and the
    // next sweep passes its expiry, the account leaves the index.
    await settleChat(fx.deps, { holdId: fresh.holdId, inputTokens: 1, outputTokens: 1 });
    fx.clock.value += fx.deps.holdTtlMs + 1;
    await runSweep(fx.deps, schedule, { remainingMs: plenty });
    fx.requests.reset();
    const idle = await runSweep(fx.deps, schedule, { remainingMs: plenty });
    expect(idle.due).toBe(0);
    expect((await auditAccount(fx.deps, user)).ok).toBe(true);
  });

  it("one failing account never stops the rest", async () => {
    fx.clock.at(400);
    const users = Array.from({ length: 5 }, () => uniqueUser("fail"));
    for (const user of users) await ensureAccount(fx.deps, user);
    fx.clock.at(430);
    const broken = users[2] as string;
    const store = fx.deps.store;
    const failing = {
      ...fx.deps,
      store: {
        ...store,
        commit: async (commit: Parameters<typeof store.commit>[0]) => {
          if (commit.userId === broken) throw new Error("disk on fire");
          return store.commit(commit);
        },
      },
    };
    const failures: string[] = [];
    const summary = await runSweep(failing, schedule, { remainingMs: plenty, onFailure: (userId) => failures.push(userId) });
    expect(summary).toMatchObject({ granted: 4, failed: 1, complete: true });
    expect(failures).toEqual([broken]);
    const retry = await runSweep(fx.deps, schedule, { remainingMs: plenty });
    expect(retry).toMatchObject({ granted: 1, failed: 0 });
  });
});
