import { getEventListeners } from "node:events";
import { PassThrough, Readable, Writable } from "node:stream";
import fc from "fast-check";
import { countTokens } from "gpt-tokenizer/encoding/o200k_base";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../lib/config.js";
import { ConflictError, InsufficientCreditsError, RateLimitedError, UnauthorizedError, UnknownModelError } from "../../lib/errors.js";
import { outputTokenLimit, parseChatRequest, promptText, upstreamBody } from "../../lib/proxy/chat-request.js";
import { answerDeadline, streamSink } from "../../lib/proxy/function-url.js";
import { toOpenAIError, upstreamErrorBody } from "../../lib/proxy/openai-error.js";
import { writtenBeforeDeadline } from "../../lib/proxy/response-sink.js";
import { newRelayState, readEvents, relayEvent } from "../../lib/proxy/sse-relay.js";
import { estimatedOutputTokens, PROVIDER_MARGIN, promptTokenBound, textTokenBound, TOKENS_PER_MESSAGE, TOKENS_PER_REPLY } from "../../lib/proxy/token-bound.js";
import { reportedUsage } from "../../lib/proxy/usage.js";
import { PROTOTYPE_NAMES } from "../helpers/hostile-ids.js";

const PLAIN = { disallowedSpecial: new Set<string>() };
const anyText = fc.oneof(fc.string(), fc.string({ unit: "grapheme" }), fc.constantFrom("<|endoftext|>", "<|im_start|>user", "\u0000", "🙂".repeat(50)));

describe("token bound (the hold's input side)", () => {
  it("an OpenAI model's text is held at exactly its o200k count, never more than its bytes", () => {
    fc.assert(
      fc.property(anyText, (text) => {
        expect(textTokenBound(text, "openai/gpt-5.2")).toBe(Math.min(countTokens(text, PLAIN), Buffer.byteLength(text)));
      }),
    );
  });

  it("another provider's text: margin × o200k or its bytes, whichever is smaller, and never below the o200k count", () => {
    fc.assert(
      fc.property(anyText, (text) => {
        const bound = textTokenBound(text, "anthropic/claude-sonnet-4.5");
        const count = countTokens(text, PLAIN);
        expect(bound).toBe(Math.min(Math.ceil(count * PROVIDER_MARGIN), Buffer.byteLength(text)));
        expect(bound).toBeGreaterThanOrEqual(count);
      }),
    );
  });

  it("a prompt adds the chat framing per message and once for the reply; it grows with every text", () => {
    fc.assert(
      fc.property(fc.array(fc.array(anyText, { maxLength: 3 }), { minLength: 1, maxLength: 5 }), anyText, (messages, extra) => {
        const bound = promptTokenBound({ messages, shared: [] }, "openai/gpt-5.2");
        const texts = messages.flat().reduce((sum, text) => sum + textTokenBound(text, "openai/gpt-5.2"), 0);
        expect(bound).toBe(TOKENS_PER_REPLY + TOKENS_PER_MESSAGE * messages.length + texts);
        expect(promptTokenBound({ messages, shared: [extra] }, "openai/gpt-5.2")).toBeGreaterThanOrEqual(bound);
      }),
    );
  });

  it("the estimate of a stream's output never passes the output the hold allowed", () => {
    fc.assert(
      fc.property(anyText, fc.integer({ min: 1, max: 50 }), (text, max) => {
        expect(estimatedOutputTokens(text, "anthropic/claude-opus-4.5", max)).toBeLessThanOrEqual(max);
      }),
    );
  });
});

describe("the chat request", () => {
  const base = { model: "openai/gpt-5.2", messages: [{ role: "user", content: "hi" }] };

  it("without an output limit, the default is written upstream and held; with one, it is kept", () => {
    const parsed = parseChatRequest(JSON.stringify(base));
    expect(outputTokenLimit(parsed.request, 512)).toStrictEqual({ perChoice: 512, total: 512 });
    expect(upstreamBody(parsed, 512).max_tokens).toBe(512);
    const given = parseChatRequest(JSON.stringify({ ...base, max_completion_tokens: 40, n: 3 }));
    expect(outputTokenLimit(given.request, 512)).toEqual({ perChoice: 40, total: 120, setBy: "max_completion_tokens" });
    expect(upstreamBody(given, 512).max_tokens).toBeUndefined();
  });

  it("the limit held is the larger of max_tokens and max_completion_tokens, times n, and setBy names a field that holds it", () => {
    const limit = fc.option(fc.integer({ min: 1, max: 100_000 }), { nil: undefined });
    fc.assert(
      fc.property(limit, limit, fc.option(fc.integer({ min: 1, max: 8 }), { nil: undefined }), (maxTokens, maxCompletionTokens, n) => {
        const request = parseChatRequest(JSON.stringify({ ...base, max_tokens: maxTokens, max_completion_tokens: maxCompletionTokens, n })).request;
        const output = outputTokenLimit(request, 512);
        const given = [maxTokens, maxCompletionTokens].filter((value): value is number => value !== undefined);
        expect(output.perChoice).toBe(given.length ? Math.max(...given) : 512);
        expect(output.total).toBe(output.perChoice * (n ?? 1));
        if (output.setBy === undefined) expect(given).toEqual([]);
        else expect(request[output.setBy]).toBe(output.perChoice);
      }),
    );
  });

  it("a null output limit counts as none (the default is written over it)", () => {
    const parsed = parseChatRequest(JSON.stringify({ ...base, max_tokens: null }));
    expect(upstreamBody(parsed, 99).max_tokens).toBe(99);
  });

  it("streaming forces include_usage upstream and keeps the client's other stream options; other fields pass unchanged", () => {
    const parsed = parseChatRequest(JSON.stringify({ ...base, stream: true, stream_options: { include_usage: false, extra: 1 }, temperature: 0.2, user: "u" }));
    const body = upstreamBody(parsed, 10);
    expect(body.stream_options).toEqual({ include_usage: true, extra: 1 });
    expect(body.temperature).toBe(0.2);
    expect(body.user).toBe("u");
    expect(body.messages).toEqual(base.messages);
  });

  it.each(PROTOTYPE_NAMES)("refuses a __proto__ key at any depth; %s is a plain key inside a message and an unknown field at the top", (name) => {
    expect(() => parseChatRequest(`{"model":"m","messages":[{"role":"user","content":"x","__proto__":{"content":"y"}}]}`)).toThrow(/__proto__/);
    if (name === "__proto__") return;
    const inMessage = parseChatRequest(JSON.stringify({ ...base, messages: [{ role: "user", content: "x", [name]: "y" }] }));
    expect(Object.hasOwn((upstreamBody(inMessage, 5).messages as Record<string, unknown>[])[0] as object, name)).toBe(true);
    expect(promptText(inMessage.request).messages[0]).toEqual(expect.arrayContaining([name, "y"]));
    expect(() => parseChatRequest(JSON.stringify({ ...base, [name]: 1 }))).toThrow(/not accepted by this proxy/);
  });

  it("forwards only the fields it can bound: a provider's routing, plugins, tiers and budgets are refused by name", () => {
    for (const field of ["models", "route", "plugins", "provider", "transforms", "web_search_options", "service_tier", "prediction", "audio", "modalities", "reasoning"]) {
      expect(() => parseChatRequest(JSON.stringify({ ...base, [field]: [] })), field).toThrow(new RegExp(`^${field}: not accepted`));
    }
    const allowed = parseChatRequest(JSON.stringify({ ...base, temperature: 1, tools: [], user: "u", seed: 1, stop: ["x"], response_format: { type: "text" } }));
    expect(Object.keys(upstreamBody(allowed, 5)).sort()).toEqual(["max_tokens", "messages", "model", "response_format", "seed", "stop", "temperature", "tools", "user"]);
  });

  it("holds every string of a message, whatever field it is in (legacy function_call, custom tool input)", () => {
    const parsed = parseChatRequest(
      JSON.stringify({
        ...base,
        messages: [
          { role: "assistant", content: null, function_call: { name: "f", arguments: "ARGS" } },
          { role: "assistant", content: null, tool_calls: [{ id: "c", type: "custom", custom: { name: "run", input: "INPUT" } }] },
        ],
      }),
    );
    const texts = promptText(parsed.request).messages.flat();
    expect(texts).toEqual(expect.arrayContaining(["ARGS", "INPUT", "function_call", "custom"]));
  });

  it("refuses parts it cannot bound (images, audio, files) and roles it does not know", () => {
    for (const part of [{ type: "image_url", image_url: { url: "x" } }, { type: "input_audio" }, { type: "file" }]) {
      expect(() => parseChatRequest(JSON.stringify({ ...base, messages: [{ role: "user", content: [part] }] }))).toThrow(/only text parts/);
    }
    expect(() => parseChatRequest(JSON.stringify({ ...base, messages: [{ role: "root", content: "x" }] }))).toThrow();
  });
});

describe("usage", () => {
  it("reads OpenAI's usage, cached and reasoning tokens inside the counts they belong to", () => {
    expect(
      reportedUsage({ prompt_tokens: 100, completion_tokens: 50, prompt_tokens_details: { cached_tokens: 80 }, completion_tokens_details: { reasoning_tokens: 30 } }),
    ).toEqual({ inputTokens: 100, outputTokens: 50, cachedInputTokens: 80, reasoningTokens: 30, source: "reported" });
  });

  it("is none (so the estimate applies) when counts are missing, negative, fractional or absurd; details are capped by their counts", () => {
    for (const usage of [null, {}, { prompt_tokens: -1, completion_tokens: 1 }, { prompt_tokens: 1.5, completion_tokens: 1 }, { prompt_tokens: 1, completion_tokens: 1e9 }, { prompt_tokens: "1", completion_tokens: 1 }]) {
      expect(reportedUsage(usage)).toBeUndefined();
    }
    expect(reportedUsage({ prompt_tokens: 5, completion_tokens: 5, prompt_tokens_details: { cached_tokens: 50 } })?.cachedInputTokens).toBe(5);
  });
});

describe("the SSE relay", () => {
  const chunk = (extra: Record<string, unknown>) => ({ data: JSON.stringify({ id: "c", object: "chat.completion.chunk", ...extra }) });

  it("a client that did not ask for usage gets neither the usage chunk nor usage fields; the usage is still learned", () => {
    const state = newRelayState();
    const content = relayEvent(chunk({ choices: [{ index: 0, delta: { content: "hi" } }], usage: null }), state, false);
    expect(content).toBe(`data: ${JSON.stringify({ id: "c", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content: "hi" } }] })}\n\n`);
    expect(relayEvent(chunk({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 1 } }), state, false)).toBeUndefined();
    expect(state.usage?.inputTokens).toBe(3);
    expect(state.produced).toEqual(["hi"]);
    expect(relayEvent({ data: "[DONE]" }, state, false)).toBe("data: [DONE]\n\n");
    expect(state.done).toBe(true);
  });

  it("OpenAI's compact `,\"usage\":null}` ending is cut as text, giving the same JSON as serializing it again", () => {
    const state = newRelayState();
    const data = JSON.stringify({ id: "c", choices: [{ index: 0, delta: { content: ',"usage":null}' } }], usage: null });
    const relayed = relayEvent({ data }, state, false) as string;
    expect(JSON.parse(relayed.slice("data: ".length))).toEqual({ id: "c", choices: [{ index: 0, delta: { content: ',"usage":null}' } }] });
  });

  it("a client that asked gets every event exactly as sent", () => {
    const state = newRelayState();
    const event = chunk({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 1 } });
    expect(relayEvent(event, state, true)).toBe(`data: ${event.data}\n\n`);
  });

  it("hands over the events of one read together, in order, and an event split across reads with the read that completes it", async () => {
    const encode = (text: string) => new TextEncoder().encode(text);
    async function* reads() {
      yield encode('data: {"n":1}\n\ndata: {"n":2}\n\ndata: {"n"'); // two whole events and the start of a third
      yield encode(':3}\n\n');
      yield encode("data: [DONE]\n\n");
    }
    const handedOver: string[][] = [];
    await readEvents(Readable.from(reads()), async (events) => {
      handedOver.push(events.map((event) => event.data));
    });
    expect(handedOver).toEqual([['{"n":1}', '{"n":2}'], ['{"n":3}'], ["[DONE]"]]);
  });

  it("never hands over while a handover is awaited (reads wait, in order), and a body that then breaks off rejects", async () => {
    const encode = (text: string) => new TextEncoder().encode(text);
    const body = new PassThrough();
    const handedOver: string[] = [];
    let inFlight = 0;
    let most = 0;
    const reading = readEvents(body, async (events) => {
      inFlight += 1;
      most = Math.max(most, inFlight);
      await new Promise((resolve) => setTimeout(resolve, 5)); // a slow client
      handedOver.push(...events.map((event) => event.data));
      inFlight -= 1;
    });
    for (let n = 1; n <= 5; n++) {
      body.write(encode(`data: {"n":${n}}\n\n`));
      await new Promise((resolve) => setImmediate(resolve));
    }
    while (handedOver.length < 5) await new Promise((resolve) => setTimeout(resolve, 5));
    body.destroy(new Error("connection reset"));
    await expect(reading).rejects.toThrow("connection reset");
    expect(most).toBe(1);
    expect(handedOver).toEqual(['{"n":1}', '{"n":2}', '{"n":3}', '{"n":4}', '{"n":5}']);
  });

  it("a body that closes before its end rejects; a handover that throws rejects with its error and destroys the body", async () => {
    const cut = new PassThrough();
    const cutReading = readEvents(cut, async () => undefined);
    cut.write(new TextEncoder().encode('data: {"n":1}\n\n'));
    cut.destroy();
    await expect(cutReading).rejects.toThrow(/premature close/i);

    const body = new PassThrough();
    const refused = readEvents(body, async () => {
      throw new Error("refused by the handover");
    });
    body.write(new TextEncoder().encode('data: {"n":1}\n\n'));
    await expect(refused).rejects.toThrow("refused by the handover");
    expect(body.destroyed).toBe(true);
  });

  it("a handover that takes its events at once (no promise) lets the read go on; one that throws at once rejects and destroys the body", async () => {
    const encode = (text: string) => new TextEncoder().encode(text);
    async function* reads() {
      for (let n = 1; n <= 3; n++) yield encode(`data: {"n":${n}}\n\n`);
      yield encode("data: [DONE]\n\n");
    }
    const taken: string[] = [];
    await readEvents(Readable.from(reads()), (events) => {
      taken.push(...events.map((event) => event.data));
      return undefined;
    });
    expect(taken).toEqual(['{"n":1}', '{"n":2}', '{"n":3}', "[DONE]"]);

    const body = new PassThrough();
    const refused = readEvents(body, () => {
      throw new Error("refused at once");
    });
    body.write(encode('data: {"n":1}\n\n'));
    await expect(refused).rejects.toThrow("refused at once");
    expect(body.destroyed).toBe(true);
  });

  it("the Function URL sink: a write the stream takes costs no promise; one it must buffer waits for drain, or for the client to leave", async () => {
    const raw = new Writable({ highWaterMark: 8, write: (_chunk, _encoding, callback) => setTimeout(callback, 5) });
    const sink = streamSink(raw, (stream) => stream);
    sink.start(200, {});
    expect(sink.write("1234")).toBeUndefined(); // under the high-water mark
    const waiting = sink.write("more than eight bytes");
    expect(waiting).toBeInstanceOf(Promise);
    await waiting;
    expect(raw.writableLength).toBe(0); // it resolved on drain

    const leaving = new Writable({ highWaterMark: 1, write: () => undefined }); // a client that never reads
    const gone = streamSink(leaving, (stream) => stream);
    gone.start(200, {});
    const stuck = gone.write("never taken");
    expect(stuck).toBeInstanceOf(Promise);
    leaving.destroy();
    await stuck; // resolved by the close
    expect(gone.clientGone).toBe(true);
    expect(gone.write("after")).toBeUndefined();
  });

  it("what arrived just before the body broke off, with no handover in flight, is handed over before the read rejects", async () => {
    const body = new PassThrough();
    const seen: string[] = [];
    const reading = readEvents(body, async (events) => {
      seen.push(...events.map((event) => event.data));
    });
    body.write(new TextEncoder().encode('data: {"n":1}\n\n'));
    body.destroy(new Error("connection reset")); // the same tick: no 'readable' comes any more
    await expect(reading).rejects.toThrow("connection reset");
    expect(seen).toEqual(['{"n":1}']);
  });

  it("a write raced against the deadline: finished or not, it leaves no listener on the call's signal", async () => {
    const deadline = new AbortController();
    for (let i = 0; i < 100; i++) expect(await writtenBeforeDeadline(Promise.resolve(), deadline.signal)).toBe(true);
    expect(getEventListeners(deadline.signal, "abort")).toHaveLength(0);
    const stuck = writtenBeforeDeadline(new Promise<void>(() => undefined), deadline.signal); // a client that does not read
    expect(getEventListeners(deadline.signal, "abort")).toHaveLength(1);
    deadline.abort();
    expect(await stuck).toBe(false);
    expect(getEventListeners(deadline.signal, "abort")).toHaveLength(0);
    expect(await writtenBeforeDeadline(Promise.resolve(), deadline.signal)).toBe(false); // past the deadline nothing is written
  });

  it("collects reasoning and tool call text for the estimate", () => {
    const state = newRelayState();
    relayEvent(chunk({ choices: [{ delta: { reasoning: "think", tool_calls: [{ function: { name: "f", arguments: '{"a":1}' } }] } }] }), state, false);
    expect(state.produced).toEqual(["think", "f", '{"a":1}']);
  });
});

describe("errors in OpenAI's shape", () => {
  it("maps the contract's errors to OpenAI's types and codes, keeping status and Retry-After", () => {
    expect(toOpenAIError(new InsufficientCreditsError(10, 5, 5))).toMatchObject({ status: 402, body: { error: { type: "insufficient_quota", code: "insufficient_credits", required: 10 } } });
    expect(toOpenAIError(new UnauthorizedError())).toMatchObject({ status: 401, body: { error: { code: "invalid_api_key", param: null } } });
    expect(toOpenAIError(new UnknownModelError("x"))).toMatchObject({ status: 400, body: { error: { code: "model_not_found", param: "model" } } });
    expect(toOpenAIError(new RateLimitedError(12))).toMatchObject({ status: 429, headers: { "Retry-After": "12" }, body: { error: { code: "rate_limit_exceeded" } } });
    expect(toOpenAIError(new ConflictError("busy", "REQUEST_IN_PROGRESS"))).toMatchObject({ status: 409, headers: { "x-should-retry": "false" } });
  });

  it("an unknown error is a bare 500 that leaks nothing", () => {
    const mapped = toOpenAIError(new Error("secret table name ledger-prod"));
    expect(mapped.status).toBe(500);
    expect(JSON.stringify(mapped.body)).not.toContain("secret");
  });

  it("an upstream's body is kept only as OpenAI's four fields, or described by its status", () => {
    expect(upstreamErrorBody(429, JSON.stringify({ error: { message: "slow", type: "rate", code: 429, internal: "x" } }))).toEqual({
      error: { message: "slow", type: "rate", code: "429", param: null },
    });
    expect(upstreamErrorBody(500, "<html>")).toEqual({ error: { message: "The model provider answered 500", type: "server_error", code: null, param: null } });
  });
});

describe("proxy config and deadline", () => {
  it("names what the proxy needs: auth, and a provider key unless the provider is on this machine", () => {
    expect(() => loadConfig({ TABLE_NAME: "tbl" }, "proxy")).toThrow(/AUTH_JWT_SECRET or AUTH_JWKS_URL.*UPSTREAM_API_KEY is required/);
    const local = loadConfig({ TABLE_NAME: "tbl", AUTH_JWT_SECRET: "x".repeat(32), UPSTREAM_BASE_URL: "http://127.0.0.1:9999/v1" }, "proxy");
    expect(local.PROXY_MAX_OUTPUT_TOKENS).toBe(4096);
    const remote = loadConfig({ TABLE_NAME: "tbl", AUTH_JWT_SECRET: "x".repeat(32), UPSTREAM_API_KEY: "sk" }, "proxy");
    expect(remote.UPSTREAM_BASE_URL).toBe("https://openrouter.ai/api/v1");
    expect(() => loadConfig({ TABLE_NAME: "tbl", AUTH_JWT_SECRET: "x".repeat(32), UPSTREAM_API_KEY: "sk", UPSTREAM_BASE_URL: "http://evil.example/v1" }, "proxy")).toThrow(/https/);
  });

  it("answers before the function's timeout and before the hold could expire, with a margin to settle in", () => {
    expect(answerDeadline(0, 600_000, 900_000)).toBe(590_000);
    expect(answerDeadline(0, 600_000, 60_000)).toBe(50_000);
    expect(answerDeadline(0, 5_000, 900_000)).toBe(1_000);
  });
});
