import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { countTokens } from "gpt-tokenizer/encoding/o200k_base";
import { afterAll, describe, expect, it } from "vitest";
import { authorizeBody } from "../../lib/http/schemas.js";
import { authorizeChat, releaseHold } from "../../lib/ledger/index.js";
import { costOfCall } from "../../lib/pricing.js";
import { parseChatRequest, promptText } from "../../lib/proxy/chat-request.js";
import { promptTokenBound } from "../../lib/proxy/token-bound.js";
import { serveProxyRequest } from "../../lib/proxy/chat-proxy.js";
import type { ProxyDeps } from "../../lib/proxy/deps.js";
import { OPUS, SONNET, uniqueUser } from "../helpers/ledger.js";
import { memorySink, priced, proxyFixture, sseData, UPSTREAM_KEY, useProxyFixture } from "../helpers/proxy.js";
import { userToken } from "../helpers/tokens.js";

/**
 * Red-team round 21 against the metered chat proxy (lib/proxy). Every test here is a finding: it
 * fails on the code as it was reviewed, and states what the proxy should do instead.
 */
const fx = useProxyFixture();
afterAll(() => fx.close());

const plain = { disallowedSpecial: new Set<string>() };

async function post(userId: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${fx.baseUrl}/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${await userToken(userId)}`, "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function directRequest(userId: string, body: unknown, deadlineMs = 30_000) {
  return {
    method: "POST",
    path: "/v1/chat/completions",
    headers: { authorization: `Bearer ${await userToken(userId)}` },
    body: JSON.stringify(body),
    deadline: Date.now() + deadlineMs,
  };
}

async function ledgerOf(userId: string, deps = fx.ledger.deps) {
  const account = await deps.store.getAccount(userId);
  const entries = await deps.store.allEntries(userId);
  return { account, entries, settles: entries.filter((entry) => entry.reason === "settle") };
}

/** A scripted provider for what the stand-in cannot say: each test hands it the whole answer. */
async function scriptedUpstream(answer: (body: Record<string, unknown>, response: ServerResponse) => void | Promise<void>) {
  const server = createServer(async (request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    await answer(JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>, response);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  const deps: ProxyDeps = { ...fx.deps, upstream: { baseUrl: `http://127.0.0.1:${port}/v1`, apiKey: UPSTREAM_KEY } };
  return {
    deps,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const chunk = (delta: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 1, model: SONNET, choices: [{ index: 0, delta, finish_reason: null }], ...extra })}\n\n`;

describe("redteam21: what the client sends changes what the provider runs, not what is held", () => {
  it.each([
    // OpenRouter (the default UPSTREAM_BASE_URL) documents `models`: when the primary model errors
    // (context length, moderation, rate limit…) it runs the next one and bills "the model that was
    // ultimately used". A client triggers the fallback at will (e.g. a prompt over the primary's
    // context, which MAX_INPUT_TOKENS allows) and the call is priced as the request's `model`.
    ["a `models` fallback list naming a dearer model", { models: [SONNET, OPUS] }],
    // OpenRouter's web plugin: search results billed per request by OpenRouter (never in the
    // token usage the proxy charges) and pasted into the prompt the hold did not bound.
    ["the `plugins` web search (billed per request, results added to the prompt)", { plugins: [{ id: "web", max_results: 10 }] }],
  ])("%s never reaches the provider", async (_name, extra) => {
    const userId = uniqueUser("rt21-route");
    const before = fx.upstream.calls.length;
    fx.upstream.scenario({ reply: "ok" });
    const response = await post(userId, { model: SONNET, messages: [{ role: "user", content: "hi" }], ...extra });
    await response.text();
    // Refused before the provider (4xx), or forwarded without the field: either way not upstream.
    const forwarded = fx.upstream.calls.slice(before).map((call) => Object.keys(extra).filter((key) => key in call.body));
    expect(forwarded.flat()).toEqual([]);
  });

  it("a call the provider says ran on another model is charged as the model that ran", async () => {
    // OpenRouter: "Requests are priced using the model that was ultimately used, which will be
    // returned in the model attribute of the response body." The proxy never reads that attribute.
    const userId = uniqueUser("rt21-ran");
    const usage = { prompt_tokens: 1000, completion_tokens: 200, total_tokens: 1200 };
    const upstream = await scriptedUpstream((body, response) => {
      const ran = Array.isArray(body.models) ? (body.models as string[]).at(-1) : body.model;
      response.writeHead(200, { "content-type": "application/json" });
      response.end(
        JSON.stringify({
          id: "x",
          object: "chat.completion",
          created: 1,
          model: ran,
          choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
          usage,
        }),
      );
    });
    try {
      const sink = memorySink();
      await serveProxyRequest(upstream.deps, await directRequest(userId, { model: SONNET, models: [SONNET, OPUS], max_tokens: 300, messages: [{ role: "user", content: "x".repeat(3000) }] }), sink);
      const { settles } = await ledgerOf(userId);
      const ranModel = (sink.status === 200 ? sink.json().model : undefined) as string | undefined;
      // Refused, or charged as what ran.
      if (sink.status === 200) expect(-(settles[0]?.amount ?? 0)).toBe(priced(ranModel ?? SONNET, usage));
      else expect(settles).toEqual([]);
    } finally {
      await upstream.close();
    }
  });

  it("the legacy `function_call` of an assistant message is part of the prompt, so it is held (or refused), never charged past the balance", async () => {
    // OpenAI's chat API still takes an assistant message's `function_call` {name, arguments} and
    // puts it in the prompt; promptText counts `tool_calls` but not `function_call`, so its
    // arguments ride along unheld: a balance of 5 holds 1 credit, and the provider's reported
    // prompt (the arguments included) is charged past it.
    const userId = uniqueUser("rt21-fncall");
    await fx.setBalance(userId, 5);
    const big = "lorem ipsum dolor sit amet ".repeat(4000); // ~24k o200k tokens
    const bigTokens = countTokens(big, plain);
    const upstream = await scriptedUpstream((body, response) => {
      // a provider counting every text of the prompt it was sent (here: o200k over each message's JSON)
      const promptTokens = (body.messages as unknown[]).reduce<number>((sum, message) => sum + 4 + countTokens(JSON.stringify(message), plain), 3);
      response.writeHead(200, { "content-type": "application/json" });
      response.end(
        JSON.stringify({
          id: "x",
          object: "chat.completion",
          created: 1,
          model: body.model,
          choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }],
          usage: { prompt_tokens: promptTokens, completion_tokens: 1, total_tokens: promptTokens + 1 },
        }),
      );
    });
    try {
      const sink = memorySink();
      const request = await directRequest(userId, {
        model: SONNET,
        max_tokens: 10,
        messages: [
          { role: "user", content: "call f" },
          { role: "assistant", content: null, function_call: { name: "f", arguments: big } },
          { role: "function", name: "f", content: "done" },
        ],
      });
      await serveProxyRequest(upstream.deps, request, sink);
      const { settles, account } = await ledgerOf(userId);
      const reserved = Number(settles[0]?.refs.reserved ?? 0);
      // Refused up front (402: the hold covers the arguments, the balance does not); never below zero.
      expect({
        status: sink.status,
        heldForTheArguments: sink.status !== 200 || reserved >= costOfCall(SONNET, bigTokens, 10),
        balanceNotNegative: (account?.balance ?? 0) >= 0,
      }).toEqual({ status: 402, heldForTheArguments: true, balanceNotNegative: true });
    } finally {
      await upstream.close();
    }
  });

  it("a custom tool call's `input` (OpenAI custom tools) is part of the prompt, so it is part of the hold", async () => {
    const userId = uniqueUser("rt21-custom");
    const big = "lorem ipsum dolor sit amet ".repeat(4000);
    const bigTokens = countTokens(big, plain);
    fx.upstream.scenario({ reply: "ok" });
    const response = await post(userId, {
      model: SONNET,
      max_tokens: 10,
      messages: [
        { role: "user", content: "go" },
        { role: "assistant", content: null, tool_calls: [{ id: "call_1", type: "custom", custom: { name: "run", input: big } }] },
        { role: "tool", tool_call_id: "call_1", content: "done" },
      ],
    });
    expect(response.status).toBe(200);
    await response.text();
    const { settles } = await ledgerOf(userId);
    expect(Number(settles[0]?.refs.reserved)).toBeGreaterThanOrEqual(costOfCall(SONNET, bigTokens, 10));
  });
});

describe("redteam21: the proxy's requestIds and the gate's", () => {
  it("a gate authorize cannot reach a proxy call's open hold (the `proxy:` prefix is not reserved), so a gate release cannot make the call free", async () => {
    // chat-proxy.ts: "Proxy requestIds live apart from the gate API's, so neither can collide" —
    // but the gate's requestId pattern accepts `proxy:…`, and the gate's authorize (openHold
    // "reuse") hands back an open hold with the same requestId, model and reserve. A gate caller
    // that forwards an end user's idempotency key lets that user fetch the proxy call's hold id
    // and release it while the answer streams; the proxy's settle then returns the release.
    const userId = uniqueUser("rt21-prefix");
    const body = { model: SONNET, stream: true, max_tokens: 400, messages: [{ role: "user", content: "Write a long story." }] };
    fx.upstream.scenario({ reply: "word ".repeat(300), firstTokenDelayMs: 1_000 });
    const call = post(userId, body, { "x-request-id": "story-1" }).then((response) => response.text());
    await new Promise((resolve) => setTimeout(resolve, 400)); // the proxy's hold is open, the provider not yet answering
    let stolen: string | undefined;
    try {
      // what POST /v1/gate/authorize runs: its body's schema, then authorize
      const gateBody = authorizeBody.parse({
        userId,
        requestId: "proxy:story-1",
        model: SONNET,
        inputTokens: promptTokenBound(promptText(parseChatRequest(JSON.stringify(body)).request), SONNET),
        maxOutputTokens: 400,
      });
      stolen = (await authorizeChat(fx.ledger.deps, gateBody)).holdId;
      await releaseHold(fx.ledger.deps, { holdId: stolen });
    } catch {
      // refused: the gate cannot reach the proxy's hold (what should happen)
    }
    await call;
    const { settles } = await ledgerOf(userId);
    const usage = fx.upstream.calls.at(-1)?.usage;
    expect({ gateGotTheProxysHold: stolen !== undefined, charged: -(settles[0]?.amount ?? 0) }).toEqual({
      gateGotTheProxysHold: false,
      charged: usage ? priced(SONNET, usage) : -1,
    });
  });
});

describe("redteam21: a client that stops reading", () => {
  it("is still settled by the call's deadline, not left open for the sweep to release for free", { timeout: 60_000 }, async () => {
    // The deadline (AbortSignal on the upstream fetch) stops the upstream read, but a write to a
    // client that does not read waits for 'drain' with no bound: the proxy sits in sink.write past
    // the deadline, past the settle margin, past the hold's expiry. On Lambda the function is
    // killed at its timeout and the hold is released by the sweep: the whole answer was free.
    const local = await proxyFixture({ ledger: { holdTtlMs: 18_000 } }); // answerDeadline: 8 s
    const userId = uniqueUser("rt21-stall");
    await local.setBalance(userId, 100_000);
    local.upstream.scenario({ reply: "word ".repeat(120_000) });
    const token = await userToken(userId);
    const body = JSON.stringify({ model: SONNET, stream: true, max_tokens: 120_000, messages: [{ role: "user", content: "go" }] });
    const { port, hostname } = new URL(local.baseUrl);
    const socket = connect(Number(port), hostname);
    socket.pause(); // never read: the proxy's writes fill the socket buffers and wait for 'drain'
    socket.write(
      `POST /v1/chat/completions HTTP/1.1\r\nhost: ${hostname}\r\nauthorization: Bearer ${token}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    try {
      // deadline 8 s + settle margin 10 s = the hold's expiry: by then the call must be charged.
      await new Promise((resolve) => setTimeout(resolve, 17_500));
      const upstreamCall = local.upstream.calls[0];
      expect(upstreamCall?.usage?.completion_tokens).toBeGreaterThan(100_000); // the provider produced (and bills) the answer
      const { settles, account } = await ledgerOf(userId, local.ledger.deps);
      expect({ settled: settles.length, openHolds: Object.keys(account?.holds ?? {}).length }).toEqual({ settled: 1, openHolds: 0 });
    } finally {
      socket.destroy();
      await local.close();
    }
  });
});

describe("redteam21: the prompt bound's cost", () => {
  it("a 100 kB prompt of one repeated letter is bounded (or refused) in well under a second, not minutes of blocked event loop", { timeout: 120_000 }, async () => {
    // promptTokenBound runs o200k BPE over every text before anything else (before the hold, so
    // before the rate limit and the balance check): BPE over one long pre-token is quadratic.
    // Measured here: "a" x 50k 2 s, x 200k 57 s; "漢" x 50k 16 s. Any signed-in user (balance 0
    // is enough) pins a proxy Lambda for its whole 600 s timeout with a ~1 MB body, and locally
    // blocks the one event loop for every other client. The call is synchronous, so the time is
    // measured rather than raced.
    const userId = uniqueUser("rt21-bpe");
    await fx.setBalance(userId, 0);
    const started = Date.now();
    const response = await post(userId, { model: SONNET, messages: [{ role: "user", content: "a".repeat(100_000) }] });
    await response.text();
    const elapsedMs = Date.now() - started;
    expect(response.status).toBe(402); // the balance, not the tokenizer, is what ends this call
    expect(elapsedMs).toBeLessThan(1_000);
  });
});

describe("redteam21: what the client is told", () => {
  it("the provider's 402 (the proxy's own provider account is out of money) is the proxy's problem: 502, not the client's 402", async () => {
    // 401/403 from the provider are mapped to 502 as "about the proxy's own credentials"; 402 is
    // too (OpenRouter answers 402 when the key's account lacks credits), but is passed on, so an
    // OpenAI client (and the app's "buy credits" flow) believes the user's balance is exhausted.
    const userId = uniqueUser("rt21-402");
    fx.upstream.scenario({ status: 402 });
    const response = await post(userId, { model: SONNET, messages: [{ role: "user", content: "hi" }] });
    const body = (await response.json()) as { error: { message: string } };
    expect(response.status).toBe(502);
    expect(body.error.message).not.toContain("stand-in refused");
  });

  it("an upstream stream that ends without [DONE] (and without usage) is reported to the client as broken off", async () => {
    // state.done is tracked and never read: a provider connection that ends cleanly mid-answer is
    // relayed as a complete answer (no error event), and the SDK's stream simply ends.
    const userId = uniqueUser("rt21-nodone");
    const upstream = await scriptedUpstream((_body, response) => {
      response.writeHead(200, { "content-type": "text/event-stream" });
      response.write(chunk({ role: "assistant", content: "" }));
      response.write(chunk({ content: "The answer is" }));
      response.end(); // no finish_reason, no usage, no [DONE]
    });
    try {
      const sink = memorySink();
      await serveProxyRequest(upstream.deps, await directRequest(userId, { model: SONNET, stream: true, messages: [{ role: "user", content: "q" }] }), sink);
      const events = sseData(sink.body());
      expect(events.at(-1)).toContain("upstream_stream_cut");
    } finally {
      await upstream.close();
    }
  });

  it("an error event after only the role chunk (no token yet) is a failure before the first token: released, not charged", async () => {
    // The proxy releases a stream whose *first event* is an error, but OpenAI-style streams open
    // with a role-only chunk (`delta: {role, content: ""}`; the stand-in does too). An error right
    // after it has produced nothing, yet the call is settled by the estimate: the whole prompt
    // bound charged, and the client gets a 200 stream holding only an error.
    const userId = uniqueUser("rt21-roleerr");
    const upstream = await scriptedUpstream((_body, response) => {
      response.writeHead(200, { "content-type": "text/event-stream" });
      response.write(chunk({ role: "assistant", content: "" }));
      response.end(`data: ${JSON.stringify({ error: { message: "Provider returned error", code: 502 } })}\n\n`);
    });
    try {
      const sink = memorySink();
      await serveProxyRequest(upstream.deps, await directRequest(userId, { model: SONNET, stream: true, messages: [{ role: "user", content: "hello ".repeat(3000) }] }), sink);
      const { settles, account } = await ledgerOf(userId);
      expect({ status: sink.status, charged: settles.map((entry) => entry.amount) }).toEqual({ status: 502, charged: [] });
      expect(account?.balance).toBe(fx.ledger.deps.catalog.signupBonus);
    } finally {
      await upstream.close();
    }
  });

  it("a whole answer that is the provider's error (200 with an `error` body) is not charged and not passed on as a success", async () => {
    // The same error as a stream's first event is released and answered with its status; as a
    // non-streaming 200 body it is charged the full prompt bound plus the error text "as output",
    // and the client gets a 200 whose body has no choices.
    const userId = uniqueUser("rt21-200err");
    const upstream = await scriptedUpstream((_body, response) => {
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify({ error: { message: "Provider returned error", code: 502 } }));
    });
    try {
      const sink = memorySink();
      await serveProxyRequest(upstream.deps, await directRequest(userId, { model: SONNET, messages: [{ role: "user", content: "hello ".repeat(2000) }] }), sink);
      const { settles, account } = await ledgerOf(userId);
      expect({ status: sink.status, charged: settles.map((entry) => entry.amount) }).toEqual({ status: 502, charged: [] });
      expect(account?.balance).toBe(fx.ledger.deps.catalog.signupBonus);
    } finally {
      await upstream.close();
    }
  });
});
