/**
 * The proxy section's metered proxy in a process of its own, as in production it is its own
 * Lambda: `node --import tsx test/bench/proxy-server-child.ts '{…}'`, started by
 * test/bench/proxy-rig.ts. It serves the proxy exactly as `npm start` does
 * (infra/local/proxy-server.ts) with ProxyDeps built here the way test/helpers/proxy.ts builds
 * them: its own DynamoDB client over the bench's DynamoDB Local endpoint and table, the bench's
 * ledger settings, the test JWT secret (test/helpers/tokens.ts), the stand-in's base URL.
 *
 * An SDK middleware on that client counts its DynamoDB requests by command and times each
 * UpdateItem (the authorize write); `GET /__stats` hands those over and starts afresh. Per request,
 * by its `x-bench-tag` header and on the monotonic clock the bench shares, it also records when the
 * request reached this process and when its first UpdateItem (the authorize write) started and
 * ended, and hands those over by the same call. Prints `{"baseUrl":…}` once it listens on
 * 127.0.0.1; exits on SIGTERM or stdin close.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { serveProxyLocally } from "../../infra/local/proxy-server.js";
import { createAuthenticator } from "../../lib/auth.js";
import { localDynamoClient } from "../../lib/dynamo/local-client.js";
import { createDynamoLedgerStore } from "../../lib/ledger/dynamo-ledger-store.js";
import type { LedgerDeps } from "../../lib/ledger/index.js";
import { logger } from "../../lib/logger.js";
import type { ProxyDeps } from "../../lib/proxy/deps.js";
import { TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET } from "../helpers/tokens.js";
import { benchCatalog } from "./catalog.js";
import { announce, exitWhenTold, monotonicMs } from "./child-process.js";
import { percentile } from "./stats.js";

export interface ProxyChildConfig {
  dynamoEndpoint: string;
  tableName: string;
  holdTtlMs: number;
  maxOpenHolds: number;
  authorizeRateLimitPerMinute: number;
  upstreamBaseUrl: string;
  upstreamKey: string;
  defaultMaxOutputTokens: number;
}

/** What `GET /__stats` answers: everything since the previous call. */
export interface ProxyChildStats {
  /** each UpdateItem's duration (ms): the authorize write */
  authorizeWriteMs: number[];
  authorizeWriteP50Ms: number;
  /** DynamoDB requests by command name (e.g. { TransactWriteItems: 1, UpdateItem: 1 }) */
  byCommand: Record<string, number>;
  /** `x-bench-tag` → when the request reached this process and its authorize write started and ended (monotonic ms) */
  arrivals: Record<string, ProxyArrival>;
  /** CPU time (user + system) this process used since the previous call, ms */
  cpuMs: number;
}

export interface ProxyArrival {
  arrived: number;
  writeStarted?: number;
  writeEnded?: number;
}

const config = JSON.parse(process.argv[2] ?? "{}") as ProxyChildConfig;
logger.setLogLevel("ERROR");
const client = localDynamoClient(config.dynamoEndpoint);
let writes: number[] = [];
let counts = new Map<string, number>();
let arrivals = new Map<string, ProxyArrival>();
let cpuSince = process.cpuUsage();
/** the request a DynamoDB call is made for (the tag's record), through the proxy's awaits */
const current = new AsyncLocalStorage<ProxyArrival>();
client.middlewareStack.add(
  (next, context) => async (args) => {
    const name = (context.commandName ?? "unknown").replace(/Command$/, "");
    counts.set(name, (counts.get(name) ?? 0) + 1);
    if (name !== "UpdateItem") return next(args);
    const into = writes;
    const call = current.getStore();
    const first = call !== undefined && call.writeStarted === undefined;
    const started = performance.now();
    if (first) call.writeStarted = monotonicMs();
    try {
      return await next(args);
    } finally {
      into.push(performance.now() - started);
      if (first) call.writeEnded = monotonicMs();
    }
  },
  { step: "initialize", name: "benchProxyChildMeter" },
);
const ledger: LedgerDeps = {
  store: createDynamoLedgerStore(client, config.tableName),
  now: Date.now,
  holdTtlMs: config.holdTtlMs,
  maxOpenHolds: config.maxOpenHolds,
  authorizeRateLimitPerMinute: config.authorizeRateLimitPerMinute,
  catalog: benchCatalog(config.authorizeRateLimitPerMinute),
};
const deps: ProxyDeps = {
  ledger,
  auth: createAuthenticator({ jwtSecret: TEST_SECRET, issuer: TEST_ISSUER, audience: TEST_AUDIENCE }),
  upstream: { baseUrl: config.upstreamBaseUrl, apiKey: config.upstreamKey },
  defaultMaxOutputTokens: config.defaultMaxOutputTokens,
};
const server = createServer((request, response) => {
  const tag = request.headers["x-bench-tag"];
  const call: ProxyArrival = { arrived: monotonicMs() };
  if (typeof tag === "string") arrivals.set(tag, call);
  if (request.method === "GET" && request.url === "/__stats") {
    const stats: ProxyChildStats = {
      authorizeWriteMs: writes,
      authorizeWriteP50Ms: percentile(writes, 50),
      byCommand: Object.fromEntries([...counts].sort(([a], [b]) => a.localeCompare(b))),
      arrivals: Object.fromEntries(arrivals),
      cpuMs: cpuMsSince(cpuSince),
    };
    cpuSince = process.cpuUsage();
    writes = [];
    counts = new Map();
    arrivals = new Map();
    response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(stats));
    return;
  }
  current.run(call, () => serveProxyLocally(deps, request, response)).catch((error) => {
    console.error("bench proxy server", error);
    if (!response.headersSent) response.writeHead(500).end();
  });
});
server.keepAliveTimeout = 60_000;
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
exitWhenTold(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  client.destroy();
});
announce({ baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1` });

function cpuMsSince(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
}
