import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createAuthenticator } from "../../lib/auth.js";
import { costOfCall } from "../../lib/pricing.js";
import { ensureAccount, grantCredits, type LedgerDeps } from "../../lib/ledger/index.js";
import type { ProxyDeps } from "../../lib/proxy/deps.js";
import { type FakeUpstream, startFakeUpstream } from "../../infra/local/fake-upstream.js";
import { serveProxyLocally } from "../../infra/local/proxy-server.js";
import { useFixture } from "./fixture.js";
import { ledgerFixture, type LedgerFixture } from "./ledger.js";
import { TEST_AUDIENCE, TEST_ISSUER, TEST_SECRET } from "./tokens.js";

export const UPSTREAM_KEY = "sk-upstream-test-key";

/**
 * The metered proxy as `npm start` serves it (infra/local/proxy-server.ts: Function URL events, a
 * streaming response) over a fresh DynamoDB Local table, in front of the loopback provider
 * stand-in (infra/local/fake-upstream.ts). The ledger runs on real time: the proxy's deadlines are.
 */
export async function proxyFixture(options: { ledger?: Partial<LedgerDeps>; defaultMaxOutputTokens?: number } = {}) {
  const ledger: LedgerFixture = await ledgerFixture({ now: Date.now, ...options.ledger });
  const upstream: FakeUpstream = await startFakeUpstream({ apiKey: UPSTREAM_KEY });
  const deps: ProxyDeps = {
    ledger: ledger.deps,
    auth: createAuthenticator({ jwtSecret: TEST_SECRET, issuer: TEST_ISSUER, audience: TEST_AUDIENCE }),
    upstream: { baseUrl: upstream.baseUrl, apiKey: UPSTREAM_KEY },
    defaultMaxOutputTokens: options.defaultMaxOutputTokens ?? 256,
  };
  const server = createServer((request, response) => {
    serveProxyLocally(deps, request, response).catch((error) => {
      console.error("proxy test server", error);
      if (!response.headersSent) response.writeHead(500).end();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    ledger,
    upstream,
    deps,
    /** the OpenAI-style base URL (`…/v1`) */
    baseUrl: `http://127.0.0.1:${port}/v1`,
    /** opens the user's account and makes its balance exactly `credits` (an admin adjustment) */
    async setBalance(userId: string, credits: number) {
      const account = await ensureAccount(ledger.deps, userId);
      const amount = credits - account.balance;
      if (amount === 0) return;
      await grantCredits(ledger.deps, { userId, amount, bucket: amount > 0 ? "purchased" : "allowance", reason: "admin", key: `set-balance-${userId}-${credits}` });
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await upstream.close();
    },
  };
}

export type ProxyFixture = Awaited<ReturnType<typeof proxyFixture>>;

export const useProxyFixture = (options: Parameters<typeof proxyFixture>[0] = {}): ProxyFixture =>
  useFixture("useProxyFixture", () => proxyFixture(options));

/** What the catalog charges for a usage report. */
export const priced = (model: string, usage: { prompt_tokens: number; completion_tokens: number }) =>
  costOfCall(model, usage.prompt_tokens, usage.completion_tokens);

/** A ResponseSink that keeps what it is given, for calling the proxy's use case directly. */
export function memorySink(options: { goneAfterWrites?: number } = {}) {
  const sink = {
    status: 0,
    headers: {} as Record<string, string>,
    written: [] as string[],
    ended: false,
    clientGone: false,
    start(status: number, headers: Record<string, string>) {
      sink.status = status;
      sink.headers = headers;
    },
    write(text: string): undefined {
      if (sink.clientGone) return;
      sink.written.push(text);
      if (options.goneAfterWrites !== undefined && sink.written.length >= options.goneAfterWrites) sink.clientGone = true;
    },
    async end() {
      sink.ended = true;
    },
    body: () => sink.written.join(""),
    json: () => JSON.parse(sink.written.join("")) as Record<string, unknown>,
  };
  return sink;
}

/** The `data:` payloads of an SSE body, in order. */
export const sseData = (body: string) =>
  body
    .split("\n\n")
    .filter((frame) => frame.startsWith("data: "))
    .map((frame) => frame.slice("data: ".length));
