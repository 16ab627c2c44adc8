import { fileURLToPath } from "node:url";
import type { UpstreamScenario } from "../../infra/local/fake-upstream.js";
import { authorizeChat, grantCredits, type LedgerDeps, settleChat } from "../../lib/ledger/index.js";
import { parseChatRequest, promptText } from "../../lib/proxy/chat-request.js";
import { promptTokenBound } from "../../lib/proxy/token-bound.js";
import { userToken } from "../helpers/tokens.js";
import { type Child, monotonicMs, startChild } from "./child-process.js";
import type { ProxyArrival, ProxyChildConfig, ProxyChildStats } from "./proxy-server-child.js";
import { percentile, round } from "./stats.js";

/**
 * The proxy section of the bench: the metered proxy as `npm start` serves it
 * (infra/local/proxy-server.ts: a Function URL event per request, a streaming response) in front of
 * the loopback provider stand-in (infra/local/fake-upstream.ts), against the same stand-in called
 * straight, with one fixed scenario for both.
 *
 * Three processes, as deployed: the stand-in runs in a child process of its own
 * (test/bench/proxy-upstream-child.ts), the proxy in another (test/bench/proxy-server-child.ts,
 * its ProxyDeps built there over the bench's DynamoDB Local table) — in production the proxy is its
 * own Lambda, not a library in the caller's process — and this process is only the client (and the
 * authorize-alone measurement). Direct: client → stand-in. Proxied: client → proxy → stand-in.
 * Everything listens on 127.0.0.1; all three share the machine's cores with DynamoDB Local's JVM.
 */

const UPSTREAM_KEY = "sk-bench-upstream";
const MODEL = "anthropic/claude-sonnet-4.5";
/** The stand-in's reply: one SSE chunk per o200k token, about 200 of them. */
const REPLY = Array.from({ length: 22 }, (_, i) => `Step ${i + 1}: the answer continues here.`).join(" ");
export const PROXY_SCENARIO = { firstTokenDelayMs: 20, tokenDelayMs: 1 } as const;
const MAX_TOKENS = 400;
/** Users the proxied calls are spread over (one per caller at concurrency 16), each funded by an admin grant. */
const USERS = 16;

/** One streamed answer as the client saw it (ms since the request was sent). */
export interface StreamTiming {
  /** the body's `user` field and the `x-bench-tag` header: matches the call to the children's records */
  tag: string;
  /** when it was sent (monotonic ms, comparable with the children's) */
  sentAt: number;
  /** the stand-in read the request (for the proxied call: after auth, validation and the authorize write); filled in after the block */
  upstreamMs: number;
  /** the proxy process received the request (proxied calls only; NaN straight); filled in after the block */
  proxyMs: number;
  /** inside the proxy process: received → its authorize write started, and that write ended → the stand-in read the request (proxied calls only) */
  beforeWriteMs: number;
  writeToUpstreamMs: number;
  /** the first chunk with content */
  firstTokenMs: number;
  lastTokenMs: number;
  /** the response body ended (for the proxy: after its settle write) */
  endMs: number;
  tokens: number;
}

export interface ProxyPathRow {
  ttft: { p50Ms: number; p99Ms: number };
  total: { p50Ms: number; p99Ms: number };
  /** tokens after the first ÷ seconds from the first to the last token, per stream */
  rate: { p50TokensPerSecond: number };
  /** request sent → the stand-in read it */
  toUpstreamP50Ms: number;
  /** request sent → the proxy process received it (proxied path; null straight) */
  toProxyP50Ms: number | null;
  /** in the proxy process: received → authorize write started (body, event, JWT, validation, prompt bound), p50 (proxied path; null straight) */
  beforeWriteP50Ms: number | null;
  /** authorize write ended → the stand-in read the request (the upstream call: fetch, second hop), p50 (proxied path; null straight) */
  writeToUpstreamP50Ms: number | null;
  /** last token → end of body */
  tailP50Ms: number;
  tokensPerStream: number;
}

export interface ProxyRow {
  concurrency: number;
  calls: number;
  direct: ProxyPathRow;
  proxy: ProxyPathRow;
  /** authorizeChat alone (the proxy's one write before the upstream call), same users, same input, same concurrency */
  authorize: { p50Ms: number; p99Ms: number };
  /** the authorize write (its UpdateItem) as timed inside the proxied calls themselves, by the proxy process */
  authorizeInProxy: { p50Ms: number; p99Ms: number };
  /** proxy TTFT p50 − direct TTFT p50 */
  addedTtftP50Ms: number;
  /** proxy p50 rate ÷ direct p50 rate */
  rateRatio: number;
  /** proxy total p50 ÷ direct total p50 */
  totalRatio: number;
  /** DynamoDB requests per proxied call, by command (counted by the proxy process's middleware) */
  requestsPerCall: number;
  byCommand: Record<string, number>;
  /**
   * CPU (user + system) of the proxy's process per proxied call, and per relayed SSE chunk (the
   * call's share ÷ the chunks a stream has: its tokens, the role chunk, usage and [DONE]): what
   * relaying costs besides the call's fixed work, which this figure also carries
   */
  proxyCpu: { msPerCall: number; microsecondsPerChunk: number };
}

type Body = { model: string; messages: { role: string; content: string }[]; stream: true; stream_options: { include_usage: true }; max_tokens: number; user: string };

const bodyFor = (user: string): Body => ({
  model: MODEL,
  messages: [{ role: "user", content: "Explain, step by step, how a metered proxy charges for a streamed answer." }],
  stream: true,
  stream_options: { include_usage: true },
  max_tokens: MAX_TOKENS,
  user,
});

/**
 * Posts a streaming chat completion and reads its SSE body, timing each content chunk by the read
 * it arrived in. `tag` goes in the body's `user` field (and the `x-bench-tag` header) so the
 * children's arrival times can be matched afterwards.
 */
async function streamOnce(url: string, headers: Record<string, string>, tag: string): Promise<StreamTiming> {
  const started = monotonicMs();
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", "x-bench-tag": tag, ...headers },
    body: JSON.stringify(bodyFor(tag)),
  });
  if (response.status !== 200 || !response.body) throw new Error(`${url} answered ${response.status}: ${await response.text()}`);
  const decoder = new TextDecoder();
  let buffer = "";
  let firstTokenMs = Number.NaN;
  let lastTokenMs = Number.NaN;
  let tokens = 0;
  for await (const piece of response.body) {
    const at = monotonicMs() - started;
    buffer += decoder.decode(piece, { stream: true });
    let boundary = buffer.indexOf("\n\n");
    while (boundary >= 0) {
      const frame = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary + 2);
      boundary = buffer.indexOf("\n\n");
      if (!frame.startsWith("data: ") || frame === "data: [DONE]") continue;
      const chunk = JSON.parse(frame.slice("data: ".length)) as { choices?: { delta?: { content?: string } }[]; error?: unknown };
      if (chunk.error !== undefined) throw new Error(`${url} streamed an error: ${frame}`);
      if (chunk.choices?.[0]?.delta?.content) {
        if (tokens === 0) firstTokenMs = at;
        lastTokenMs = at;
        tokens += 1;
      }
    }
  }
  const endMs = monotonicMs() - started;
  return { tag, sentAt: started, upstreamMs: Number.NaN, proxyMs: Number.NaN, beforeWriteMs: Number.NaN, writeToUpstreamMs: Number.NaN, firstTokenMs, lastTokenMs, endMs, tokens };
}

/** Fills in when the stand-in (and the proxy) received each call, from what the children recorded. */
function matchArrivals(timings: StreamTiming[], upstream: Record<string, number>, proxy?: Record<string, ProxyArrival>): StreamTiming[] {
  for (const t of timings) {
    const at = upstream[t.tag];
    if (at === undefined) throw new Error(`the stand-in never saw ${t.tag}`);
    t.upstreamMs = at - t.sentAt;
    if (proxy) {
      const reached = proxy[t.tag];
      if (reached === undefined) throw new Error(`the proxy never saw ${t.tag}`);
      t.proxyMs = reached.arrived - t.sentAt;
      if (reached.writeStarted === undefined || reached.writeEnded === undefined) throw new Error(`the proxy made no authorize write for ${t.tag}`);
      t.beforeWriteMs = reached.writeStarted - reached.arrived;
      t.writeToUpstreamMs = at - reached.writeEnded;
    }
  }
  return timings;
}

async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url);
  if (response.status !== 200) throw new Error(`${url} answered ${response.status}`);
  return (await response.json()) as T;
}

function summarize(timings: StreamTiming[]): ProxyPathRow {
  const of = (pick: (t: StreamTiming) => number) => timings.map(pick);
  // A stream whose tokens all arrived in one read (a busy machine coalesces chunks) has no rate to
  // measure; it is left out rather than let a NaN make the median meaningless.
  const rates = of((t) => (t.tokens > 1 && t.lastTokenMs > t.firstTokenMs ? (t.tokens - 1) / ((t.lastTokenMs - t.firstTokenMs) / 1000) : Number.NaN)).filter(Number.isFinite);
  if (rates.length === 0) throw new Error("no stream spread its tokens over time: no streaming rate to measure");
  const tokenCounts = new Set(of((t) => t.tokens));
  const proxied = timings.every((t) => !Number.isNaN(t.proxyMs));
  if (tokenCounts.size !== 1) throw new Error(`streams of different lengths: ${[...tokenCounts].join(", ")} tokens`);
  return {
    ttft: { p50Ms: round(percentile(of((t) => t.firstTokenMs), 50)), p99Ms: round(percentile(of((t) => t.firstTokenMs), 99)) },
    total: { p50Ms: round(percentile(of((t) => t.endMs), 50)), p99Ms: round(percentile(of((t) => t.endMs), 99)) },
    rate: { p50TokensPerSecond: round(percentile(rates, 50), 1) },
    toUpstreamP50Ms: round(percentile(of((t) => t.upstreamMs), 50)),
    toProxyP50Ms: proxied ? round(percentile(of((t) => t.proxyMs), 50)) : null,
    beforeWriteP50Ms: proxied ? round(percentile(of((t) => t.beforeWriteMs), 50)) : null,
    writeToUpstreamP50Ms: proxied ? round(percentile(of((t) => t.writeToUpstreamMs), 50)) : null,
    tailP50Ms: round(percentile(of((t) => t.endMs - t.lastTokenMs), 50)),
    tokensPerStream: [...tokenCounts][0] as number,
  };
}

/** `concurrency` callers each running `work` until `total` calls have been made. */
async function inParallel<T>(total: number, concurrency: number, work: (i: number) => Promise<T>): Promise<T[]> {
  const results: T[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) results.push(await work(next++));
    }),
  );
  return results;
}

const UPSTREAM_CHILD = fileURLToPath(new URL("./proxy-upstream-child.ts", import.meta.url));
const PROXY_CHILD = fileURLToPath(new URL("./proxy-server-child.ts", import.meta.url));

/**
 * The stand-in and the proxy server, each in its own child process (the proxy over the bench's
 * DynamoDB Local table, with the ledger's settings), and funded users with their tokens. `ledger`
 * is the bench's own, for the grants and the authorize-alone measurement in this process.
 */
export async function proxyRig(options: { ledger: LedgerDeps; dynamoEndpoint: string; tableName: string }) {
  const { ledger } = options;
  const children: Child<unknown>[] = [];
  const stopAll = () => Promise.all(children.splice(0).map((child) => child.stop()));
  let upstream: Child<{ baseUrl: string; controlUrl: string }>;
  let proxyChild: Child<{ baseUrl: string }>;
  try {
    const scenario: UpstreamScenario = { reply: REPLY, ...PROXY_SCENARIO };
    upstream = await startChild(UPSTREAM_CHILD, { apiKey: UPSTREAM_KEY, scenario }, "the provider stand-in (proxy-upstream-child.ts)");
    children.push(upstream);
    const config: ProxyChildConfig = {
      dynamoEndpoint: options.dynamoEndpoint,
      tableName: options.tableName,
      holdTtlMs: ledger.holdTtlMs,
      maxOpenHolds: ledger.maxOpenHolds,
      authorizeRateLimitPerMinute: ledger.authorizeRateLimitPerMinute,
      upstreamBaseUrl: upstream.info.baseUrl,
      upstreamKey: UPSTREAM_KEY,
      defaultMaxOutputTokens: 256,
    };
    proxyChild = await startChild(PROXY_CHILD, config, "the proxy server (proxy-server-child.ts)");
    children.push(proxyChild);
  } catch (error) {
    await stopAll();
    throw error;
  }
  const upstreamBaseUrl = upstream.info.baseUrl;
  const proxyBaseUrl = proxyChild.info.baseUrl;
  const takeUpstreamArrivals = () => getJson<Record<string, number>>(`${upstream.info.controlUrl}/__arrivals`);
  const takeProxyStats = () => getJson<ProxyChildStats>(`${new URL(proxyBaseUrl).origin}/__stats`);
  const users = Array.from({ length: USERS }, (_, i) => `proxy-bench-${i}`);
  let tokens: string[];
  let inputTokens: number;
  try {
    for (const userId of users) {
      await grantCredits(ledger, { userId, key: "admin#proxy-bench", amount: 100_000_000, bucket: "purchased", reason: "admin" });
    }
    tokens = await Promise.all(users.map((userId) => userToken(userId, { expiresIn: 3600 })));
    // what the proxy's authorize reserves for this body: the same bound, so the write alone is the same write
    inputTokens = promptTokenBound(promptText(parseChatRequest(JSON.stringify(bodyFor("x"))).request), MODEL);
  } catch (error) {
    await stopAll();
    throw error;
  }
  let seq = 0;

  const direct = (tag: string) => streamOnce(`${upstreamBaseUrl}/chat/completions`, { authorization: `Bearer ${UPSTREAM_KEY}` }, tag);
  const proxied = (i: number, tag: string) => streamOnce(`${proxyBaseUrl}/chat/completions`, { authorization: `Bearer ${tokens[i % USERS]}` }, tag);

  /** authorizeChat as the proxy calls it; the holds are settled afterwards, untimed. */
  async function authorizeAlone(total: number, concurrency: number): Promise<number[]> {
    const holds: string[] = [];
    const latencies = await inParallel(total, concurrency, async (i) => {
      const started = performance.now();
      const hold = await authorizeChat(
        ledger,
        { userId: users[i % USERS] as string, requestId: `proxy:bench-alone-${++seq}`, model: MODEL, inputTokens, maxOutputTokens: MAX_TOKENS },
        { openHold: "refuse" },
      );
      const ms = performance.now() - started;
      holds.push(hold.holdId);
      return ms;
    });
    await inParallel(holds.length, 8, (i) => settleChat(ledger, { holdId: holds[i] as string, inputTokens, outputTokens: 200 }));
    return latencies;
  }

  return {
    proxyBaseUrl,
    upstreamBaseUrl,
    async warmUp(calls: number) {
      await inParallel(calls, 4, () => direct(`warm-d-${++seq}`));
      await inParallel(calls, 4, (i) => proxied(i, `warm-p-${++seq}`));
      await authorizeAlone(calls, 4);
      await takeUpstreamArrivals();
      await takeProxyStats();
    },
    /**
     * `calls` of each path at one concurrency, in `rounds` alternating blocks (direct, proxy,
     * authorize alone), so a slow spell of the machine falls on all three rather than on one.
     */
    async measure(concurrency: number, calls: number, rounds: number): Promise<ProxyRow> {
      const directTimings: StreamTiming[] = [];
      const proxyTimings: StreamTiming[] = [];
      const authorizeMs: number[] = [];
      const writesInProxy: number[] = [];
      let proxyRequests = 0;
      let proxyCpuMs = 0;
      const byCommand: Record<string, number> = {};
      const perRound = Math.max(concurrency, Math.ceil(calls / rounds));
      for (let done = 0; done < calls; done += perRound) {
        const n = Math.min(perRound, calls - done);
        await takeUpstreamArrivals();
        const directBlock = await inParallel(n, concurrency, () => direct(`d-${++seq}`));
        directTimings.push(...matchArrivals(directBlock, await takeUpstreamArrivals()));
        await takeProxyStats(); // from here on, only these proxied calls
        const proxyBlock = await inParallel(n, concurrency, (i) => proxied(i, `p-${++seq}`));
        const stats = await takeProxyStats();
        proxyTimings.push(...matchArrivals(proxyBlock, await takeUpstreamArrivals(), stats.arrivals));
        writesInProxy.push(...stats.authorizeWriteMs);
        proxyCpuMs += stats.cpuMs;
        for (const [name, count] of Object.entries(stats.byCommand)) {
          byCommand[name] = (byCommand[name] ?? 0) + count;
          proxyRequests += count;
        }
        authorizeMs.push(...(await authorizeAlone(n, concurrency)));
      }
      const d = summarize(directTimings);
      const p = summarize(proxyTimings);
      if (d.tokensPerStream !== p.tokensPerStream) throw new Error(`direct streams had ${d.tokensPerStream} tokens, proxied ${p.tokensPerStream}`);
      return {
        concurrency,
        calls,
        direct: d,
        proxy: p,
        authorize: { p50Ms: round(percentile(authorizeMs, 50)), p99Ms: round(percentile(authorizeMs, 99)) },
        authorizeInProxy: { p50Ms: round(percentile(writesInProxy, 50)), p99Ms: round(percentile(writesInProxy, 99)) },
        addedTtftP50Ms: round(p.ttft.p50Ms - d.ttft.p50Ms),
        rateRatio: round(p.rate.p50TokensPerSecond / d.rate.p50TokensPerSecond, 3),
        totalRatio: round(p.total.p50Ms / d.total.p50Ms, 3),
        requestsPerCall: round(proxyRequests / calls),
        byCommand: Object.fromEntries(Object.entries(byCommand).map(([name, count]) => [name, round(count / calls)])),
        proxyCpu: { msPerCall: round(proxyCpuMs / calls), microsecondsPerChunk: round(((proxyCpuMs / calls) * 1000) / (p.tokensPerStream + 3), 1) },
      };
    },
    /** stops both child processes (SIGTERM, then SIGKILL), waiting until they have exited */
    async close() {
      await stopAll();
    },
  };
}
