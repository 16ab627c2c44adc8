import { Writable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { costOfCall } from "../../lib/pricing.js";
import { getBalance, releaseExpiredHolds } from "../../lib/ledger/index.js";
import { serveProxyRequest } from "../../lib/proxy/chat-proxy.js";
import { streamSink } from "../../lib/proxy/function-url.js";
import { estimatedOutputTokens, promptTokenBound } from "../../lib/proxy/token-bound.js";
import { promptText, parseChatRequest } from "../../lib/proxy/chat-request.js";
import { SONNET, uniqueUser } from "../helpers/ledger.js";
import { memorySink, priced, sseData, useProxyFixture } from "../helpers/proxy.js";
import { serviceToken, userToken } from "../helpers/tokens.js";

/**
 * Every way a proxied call can end (docs/proxy.md, "How a call ends"), each against the provider
 * stand-in: what the client gets, what is charged, and that no hold is left open.
 */
const fx = useProxyFixture();
afterAll(() => fx.close());

const chatBody = (content: string, extra: Record<string, unknown> = {}) => ({
  model: SONNET,
  messages: [{ role: "user", content }],
  ...extra,
});

async function post(userId: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${fx.baseUrl}/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${await userToken(userId)}`, "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function ledgerOf(userId: string) {
  const account = await fx.ledger.deps.store.getAccount(userId);
  const entries = await fx.ledger.deps.store.allEntries(userId);
  return { account, entries, settles: entries.filter((entry) => entry.reason === "settle") };
}

/** A call that was refused before its first token: nothing charged, its hold released. */
async function expectReleased(userId: string) {
  const { account, settles } = await ledgerOf(userId);
  expect(settles).toEqual([]);
  expect(Object.keys(account?.holds ?? {})).toEqual([]);
  expect(account?.balance).toBe(fx.ledger.deps.catalog.signupBonus);
  expect(account?.available).toBe(account?.balance);
}

describe("an upstream that fails before the first token", () => {
  it("429: passed on with its Retry-After, in OpenAI's shape; the hold released", async () => {
    const userId = uniqueUser("end-429");
    fx.upstream.scenario({ status: 429, retryAfterSeconds: 7 });
    const response = await post(userId, chatBody("hi", { stream: true }));
    expect(response.status).toBe(429);
    expect(response.headers.get("retry-after")).toBe("7");
    const body = (await response.json()) as { error: { message: string; type: string } };
    expect(body.error.message).toContain("429");
    expect(typeof body.error.type).toBe("string");
    await expectReleased(userId);
  });

  it("500: passed on; the hold released", async () => {
    const userId = uniqueUser("end-500");
    fx.upstream.scenario({ status: 500 });
    const response = await post(userId, chatBody("hi"));
    expect(response.status).toBe(500);
    await expectReleased(userId);
  });

  it("an error event as the stream's first event: its status, the hold released", async () => {
    const userId = uniqueUser("end-event");
    fx.upstream.scenario({ errorEventAfterChunks: 0 });
    const response = await post(userId, chatBody("hi", { stream: true }));
    expect(response.status).toBe(502);
    expect(((await response.json()) as { error: { message: string } }).error.message).toBe("stand-in error event");
    await expectReleased(userId);
  });

  it("the provider's refusal of the proxy's own key is a 502, never the client's 401", async () => {
    const userId = uniqueUser("end-key");
    fx.upstream.scenario({});
    const deps = { ...fx.deps, upstream: { ...fx.deps.upstream, apiKey: "sk-wrong" } };
    const sink = memorySink();
    await serveProxyRequest(deps, await directRequest(userId, chatBody("hi")), sink);
    expect(sink.status).toBe(502);
    await expectReleased(userId);
  });

  it("an unreachable provider: 502, nothing charged", async () => {
    const userId = uniqueUser("end-down");
    const deps = { ...fx.deps, upstream: { baseUrl: "http://127.0.0.1:9/v1", apiKey: "x" } };
    const sink = memorySink();
    await serveProxyRequest(deps, await directRequest(userId, chatBody("hi", { stream: true })), sink);
    expect(sink.status).toBe(502);
    expect((sink.json().error as { code: string }).code).toBe("upstream_error");
    await expectReleased(userId);
  });
});

async function directRequest(userId: string, body: unknown, options: { deadlineMs?: number; headers?: Record<string, string> } = {}) {
  return {
    method: "POST",
    path: "/v1/chat/completions",
    headers: { authorization: `Bearer ${await userToken(userId)}`, ...options.headers },
    body: JSON.stringify(body),
    deadline: Date.now() + (options.deadlineMs ?? 30_000),
  };
}

describe("a stream that ends without usage", () => {
  it("cut off mid-stream: the client is told, and the call is settled by the documented estimate", async () => {
    const userId = uniqueUser("end-cut");
    const body = chatBody("Tell me a long story.", { stream: true, max_tokens: 500 });
    fx.upstream.scenario({ reply: "one two three four five six seven eight nine ten", cutAfterChunks: 4 });
    const response = await post(userId, body);
    expect(response.status).toBe(200);
    const events = sseData(await response.text());
    const streamed = events
      .slice(0, -1)
      .map((data) => (JSON.parse(data) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? "")
      .join("");
    expect(streamed).toBe("one two three four");
    const last = JSON.parse(events.at(-1) as string) as { error: { code: string } };
    expect(last.error.code).toBe("upstream_stream_cut");
    const inputBound = promptTokenBound(promptText(parseChatRequest(JSON.stringify(body)).request), SONNET);
    const output = estimatedOutputTokens(streamed, SONNET, 500);
    const { settles, account } = await ledgerOf(userId);
    expect(settles).toHaveLength(1);
    expect(settles[0]?.refs).toMatchObject({ usage: "estimated", inputTokens: inputBound, outputTokens: output });
    expect(settles[0]?.amount).toBe(-costOfCall(SONNET, inputBound, output));
    expect(Object.keys(account?.holds ?? {})).toEqual([]);
  });

  it("ended with [DONE] but no usage chunk (a provider ignoring include_usage): estimated, no error", async () => {
    const userId = uniqueUser("end-nousage");
    fx.upstream.scenario({ reply: "Short and complete.", omitUsage: true });
    const response = await post(userId, chatBody("hi", { stream: true, stream_options: { include_usage: true } }));
    const events = sseData(await response.text());
    expect(events.at(-1)).toBe("[DONE]");
    expect(events.some((data) => data.includes('"error"'))).toBe(false);
    const { settles } = await ledgerOf(userId);
    expect(settles[0]?.refs.usage).toBe("estimated");
    expect(settles[0]?.refs.outputTokens).toBe(estimatedOutputTokens("Short and complete.", SONNET, fx.deps.defaultMaxOutputTokens));
  });

  it("an error event mid-stream is passed on, and the call settled by the estimate", async () => {
    const userId = uniqueUser("end-midevent");
    fx.upstream.scenario({ reply: "alpha beta gamma delta", errorEventAfterChunks: 2 });
    const response = await post(userId, chatBody("hi", { stream: true }));
    const events = sseData(await response.text());
    expect(events.some((data) => data.includes("stand-in error event"))).toBe(true);
    const { settles } = await ledgerOf(userId);
    expect(settles[0]?.refs).toMatchObject({ usage: "estimated", outputTokens: estimatedOutputTokens("alpha beta", SONNET, fx.deps.defaultMaxOutputTokens) });
  });

  it("the function's deadline: the upstream read stops, the call is settled by the estimate before the function ends", async () => {
    const userId = uniqueUser("end-deadline");
    fx.upstream.scenario({ reply: "slow ".repeat(40), tokenDelayMs: 40 });
    const sink = memorySink();
    await serveProxyRequest(fx.deps, await directRequest(userId, chatBody("hi", { stream: true }), { deadlineMs: 400 }), sink);
    expect(sink.status).toBe(200);
    expect(sink.ended).toBe(true);
    const streamed = sseData(sink.body())
      .filter((data) => data.startsWith("{") && !data.includes('"error"'))
      .map((data) => (JSON.parse(data) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? "")
      .join("");
    expect(streamed.length).toBeGreaterThan(0);
    expect(streamed.length).toBeLessThan("slow ".repeat(40).length);
    const { settles } = await ledgerOf(userId);
    expect(settles[0]?.refs).toMatchObject({ usage: "estimated", outputTokens: estimatedOutputTokens(streamed, SONNET, fx.deps.defaultMaxOutputTokens) });
  });
});

describe("a client that leaves", () => {
  it("the upstream is read to its end and the call settled by its reported usage", async () => {
    const userId = uniqueUser("end-gone");
    fx.upstream.scenario({ reply: "a b c d e f g h i j k l", tokenDelayMs: 2 });
    const sink = memorySink({ goneAfterWrites: 3 });
    await serveProxyRequest(fx.deps, await directRequest(userId, chatBody("hi", { stream: true })), sink);
    expect(sink.written).toHaveLength(3);
    const call = fx.upstream.calls.at(-1);
    const { settles } = await ledgerOf(userId);
    expect(settles[0]?.refs.usage).toBe("reported");
    expect(settles[0]?.amount).toBe(-priced(SONNET, call?.usage as { prompt_tokens: number; completion_tokens: number }));
  });
});

describe("a client that stops reading but stays", () => {
  it("the provider's answer, already in, is read at the deadline and the call settled by its reported usage, not the estimate", async () => {
    const userId = uniqueUser("end-stalled");
    fx.upstream.scenario({ reply: "one two three four five six seven eight nine ten eleven twelve", tokenDelayMs: 3 });
    const written: string[] = [];
    // takes the status and the first write, then never reads again (a write that waits for 'drain' forever)
    const sink = {
      clientGone: false,
      start() {},
      write(text: string) {
        written.push(text);
        return new Promise<void>(() => undefined);
      },
      async end() {},
    };
    await serveProxyRequest(fx.deps, await directRequest(userId, chatBody("hi", { stream: true }), { deadlineMs: 1_000 }), sink);
    expect(written).toHaveLength(1);
    const call = fx.upstream.calls.at(-1);
    expect(call?.clientClosed).toBe(false); // the provider had finished its answer, usage included
    const { settles } = await ledgerOf(userId);
    expect(settles).toHaveLength(1);
    expect(settles[0]?.refs).toMatchObject({ usage: "reported", outputTokens: call?.usage?.completion_tokens });
    expect(settles[0]?.amount).toBe(-priced(SONNET, call?.usage as { prompt_tokens: number; completion_tokens: number }));
  });
});

describe("a slow client", () => {
  it("writes that wait for it (backpressure) catch up before the deadline: every event, in order, charged the reported usage", async () => {
    const userId = uniqueUser("end-slow");
    const reply = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon ".repeat(6).trim();
    fx.upstream.scenario({ reply, tokenDelayMs: 1 });
    const received: string[] = [];
    // a client behind a small buffer that takes a write every 2 ms
    const client = new Writable({
      highWaterMark: 64,
      write(chunk, _encoding, callback) {
        received.push(String(chunk));
        setTimeout(callback, 2);
      },
    });
    const sink = streamSink(client, (stream) => stream);
    let waited = 0;
    const counting = {
      start: sink.start,
      write(text: string) {
        const waiting = sink.write(text);
        if (waiting) waited += 1;
        return waiting;
      },
      end: () => sink.end(),
      get clientGone() {
        return sink.clientGone;
      },
    };
    await serveProxyRequest(fx.deps, await directRequest(userId, chatBody("hi", { stream: true }), { deadlineMs: 20_000 }), counting);
    expect(waited).toBeGreaterThan(5); // the client was behind, more than once
    const events = sseData(received.join(""));
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1).map((data) => JSON.parse(data) as { choices: { delta: { content?: string } }[] });
    expect(chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("")).toBe(reply);
    const call = fx.upstream.calls.at(-1);
    const { account, settles } = await ledgerOf(userId);
    expect(settles).toHaveLength(1);
    expect(settles[0]?.refs).toMatchObject({ usage: "reported", outputTokens: call?.usage?.completion_tokens });
    expect(settles[0]?.amount).toBe(-priced(SONNET, call?.usage as { prompt_tokens: number; completion_tokens: number }));
    expect(Object.keys(account?.holds ?? {})).toEqual([]);
  });
});

describe("a settle that fails (the function dies, the ledger is down)", () => {
  it("leaves the hold to expire; the sweep's release returns its credits", async () => {
    const userId = uniqueUser("end-expire");
    let now = Date.now();
    const ledger = {
      ...fx.ledger.deps,
      now: () => now,
      store: { ...fx.ledger.deps.store, commit: async () => Promise.reject(new Error("ledger down")), settleToOutbox: async () => Promise.reject(new Error("ledger down")) },
    };
    fx.upstream.scenario({ reply: "charged never" });
    const sink = memorySink();
    await serveProxyRequest({ ...fx.deps, ledger }, await directRequest(userId, chatBody("hi", { stream: true, max_tokens: 100 })), sink);
    expect(sink.status).toBe(200);
    const held = await ledgerOf(userId);
    expect(Object.keys(held.account?.holds ?? {})).toHaveLength(1);
    now += fx.ledger.deps.holdTtlMs + 1;
    const released = await releaseExpiredHolds({ ...fx.ledger.deps, now: () => now }, userId);
    expect(released.map((outcome) => outcome.status)).toEqual(["expired"]);
    expect((await getBalance(fx.ledger.deps, userId)).available).toBe(fx.ledger.deps.catalog.signupBonus);
  });
});

describe("idempotency by X-Request-Id", () => {
  it("a retry while the first call is open answers 409 in OpenAI's shape and never makes a second hold or call", async () => {
    const userId = uniqueUser("end-retry");
    fx.upstream.scenario({ reply: "x y z w v u t s", tokenDelayMs: 60 });
    const before = fx.upstream.calls.length;
    const first = await post(userId, chatBody("hi", { stream: true }), { "x-request-id": "chat-42" });
    expect(first.status).toBe(200);
    expect(first.headers.get("x-request-id")).toBe("chat-42");
    const retry = await post(userId, chatBody("hi", { stream: true }), { "x-request-id": "chat-42" });
    expect(retry.status).toBe(409);
    expect(retry.headers.get("x-should-retry")).toBe("false");
    expect(((await retry.json()) as { error: { code: string } }).error.code).toBe("request_in_progress");
    const open = await ledgerOf(userId);
    expect(Object.keys(open.account?.holds ?? {})).toEqual(["proxy:chat-42"]);
    await first.text();
    expect(fx.upstream.calls.length).toBe(before + 1);
    expect((await ledgerOf(userId)).settles).toHaveLength(1);
  });

  it("a generated id when the client sends none, returned in X-Request-Id", async () => {
    const userId = uniqueUser("end-genid");
    fx.upstream.scenario({});
    const response = await post(userId, chatBody("hi"));
    const id = response.headers.get("x-request-id");
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    await response.text();
    expect((await ledgerOf(userId)).settles[0]?.refs.requestId).toBe(`proxy:${id}`);
  });
});

describe("who pays", () => {
  it("a service token pays for the user X-Creditgate-User names", async () => {
    const userId = uniqueUser("pay-svc");
    fx.upstream.scenario({});
    const response = await fetch(`${fx.baseUrl}/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${await serviceToken()}`, "x-creditgate-user": userId, "content-type": "application/json" },
      body: JSON.stringify(chatBody("hi")),
    });
    expect(response.status).toBe(200);
    await response.text();
    expect((await ledgerOf(userId)).settles).toHaveLength(1);
  });

  it("refusals in OpenAI's shape: no token 401, a service token naming no one 400, a user naming another 403, a token without gate naming a user 403", async () => {
    const cases: [Record<string, string>, number, string][] = [
      [{}, 401, "invalid_api_key"],
      [{ authorization: `Bearer ${await serviceToken()}` }, 400, "invalid_request"],
      [{ authorization: `Bearer ${await userToken("alice-x")}`, "x-creditgate-user": "bob-x" }, 403, "forbidden"],
      [{ authorization: `Bearer ${await serviceToken({ scope: "read" })}`, "x-creditgate-user": "bob-x" }, 403, "forbidden"],
    ];
    for (const [headers, status, code] of cases) {
      const response = await fetch(`${fx.baseUrl}/chat/completions`, { method: "POST", headers, body: JSON.stringify(chatBody("hi")) });
      expect(response.status, JSON.stringify(headers)).toBe(status);
      const body = (await response.json()) as { error: { code: string; type: string; message: string } };
      expect(body.error.code).toBe(code);
      expect(typeof body.error.message).toBe("string");
    }
  });
});

describe("what is held", () => {
  it("the larger of max_tokens and max_completion_tokens, times n, plus the prompt bound", async () => {
    const userId = uniqueUser("hold-both");
    fx.upstream.scenario({ reply: "still streaming while the hold is read", tokenDelayMs: 50 });
    const body = { model: SONNET, messages: [{ role: "user", content: "hello there" }], max_tokens: 100, max_completion_tokens: 900, n: 2, stream: true };
    const response = await post(userId, body);
    const { account } = await ledgerOf(userId);
    const hold = account?.holds["proxy:" + response.headers.get("x-request-id")];
    const inputBound = promptTokenBound(promptText(parseChatRequest(JSON.stringify(body)).request), SONNET);
    expect(hold?.reserved).toBe(costOfCall(SONNET, inputBound, 1800));
    await response.text();
  });

  it("refuses what it cannot bound or trust: image parts, __proto__ keys, absurd limits, unknown models", async () => {
    const userId = uniqueUser("hold-refuse");
    const before = fx.upstream.calls.length;
    const bodies: [string, string][] = [
      [JSON.stringify({ model: SONNET, messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "https://x/y.png" } }] }] }), "invalid_request"],
      [`{"model":"${SONNET}","messages":[{"role":"user","content":"hi"}],"__proto__":{"max_tokens":1}}`, "invalid_request"],
      [JSON.stringify(chatBody("hi", { max_tokens: 10_000_000 })), "invalid_request"],
      [JSON.stringify(chatBody("hi", { max_tokens: 0 })), "invalid_request"],
      [JSON.stringify({ ...chatBody("hi"), model: "constructor" }), "model_not_found"],
      [JSON.stringify({ ...chatBody("hi"), model: "anthropic/claude-sonnet-4.5 " }), "model_not_found"],
      ["not json", "invalid_request"],
      ["[]", "invalid_request"],
    ];
    for (const [body, code] of bodies) {
      const response = await post(userId, body);
      expect(response.status, body).toBe(400);
      expect(((await response.json()) as { error: { code: string } }).error.code, body).toBe(code);
    }
    expect(fx.upstream.calls.length).toBe(before);
  });

  it("a refused output limit names the client's field (max_tokens, max_completion_tokens, times n), not the ledger's", async () => {
    const userId = uniqueUser("hold-field");
    const before = fx.upstream.calls.length;
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ max_tokens: 1_000_000, n: 2 }, "max_tokens", /^max_tokens × n \(2\) must be at most/],
      [{ max_completion_tokens: 600_000, max_tokens: 10, n: 2 }, "max_completion_tokens", /^max_completion_tokens × n \(2\) must be at most/],
      [{ max_tokens: 600_000, max_completion_tokens: 10, n: 2 }, "max_tokens", /^max_tokens × n \(2\) must be at most/],
    ];
    for (const [extra, param, message] of cases) {
      const response = await post(userId, chatBody("hi", extra));
      expect(response.status).toBe(400);
      const { error } = (await response.json()) as { error: { message: string; param: string | null } };
      expect(error.param).toBe(param);
      expect(error.message).toMatch(message);
      expect(error.message).not.toContain("maxOutputTokens");
    }
    expect(fx.upstream.calls.length).toBe(before);
  });
});

describe("streaming", () => {
  it("chunks reach the client as they arrive, not when the answer ends", async () => {
    const userId = uniqueUser("stream-slow");
    fx.upstream.scenario({ reply: "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen", tokenDelayMs: 80 });
    const started = performance.now();
    const response = await post(userId, chatBody("hi", { stream: true }));
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let firstContentAt: number | undefined;
    let text = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
      if (firstContentAt === undefined && text.includes('"content":"one"')) firstContentAt = performance.now() - started;
    }
    const total = performance.now() - started;
    // 16 tokens 80 ms apart: the first arrives over a second before the last
    expect(firstContentAt).toBeDefined();
    expect(total - (firstContentAt as number)).toBeGreaterThan(1_000);
  });
});
