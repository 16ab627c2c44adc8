import { randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { countTokens, decode, encode } from "gpt-tokenizer/encoding/o200k_base";

/**
 * A loopback stand-in for an OpenAI-compatible provider (OpenAI, OpenRouter): `POST
 * /chat/completions` answering whole or as an SSE stream chunk by chunk, one token per chunk, the
 * way those APIs do — with `stream_options.include_usage`, a last chunk of `choices: []` and the
 * usage, then `data: [DONE]`. `npm start` runs it when no UPSTREAM_BASE_URL is given; the tests
 * and the bench script what it does per request (a scenario): slow tokens, no usage, a cut-off
 * stream, an error status, an error event.
 */
export interface UpstreamScenario {
  /** the reply's text (default: an echo of the last user message) */
  reply?: string;
  /** wait before the first chunk / between chunks (ms) */
  firstTokenDelayMs?: number;
  /** and, before the first chunk, until this settles (a test's barrier) */
  startWhen?: Promise<unknown>;
  tokenDelayMs?: number;
  /** stream without the usage chunk even when it was asked for (providers that ignore include_usage) */
  omitUsage?: boolean;
  /** break the connection after this many content chunks, without usage or [DONE] */
  cutAfterChunks?: number;
  /** answer this error status before any token (429, 500…), with Retry-After when given */
  status?: number;
  retryAfterSeconds?: number;
  /** send an `{"error":…}` event after this many content chunks (0: as the first event), then end */
  errorEventAfterChunks?: number;
  /** usage details reported: cached prompt tokens, reasoning tokens (added to the completion) */
  cachedTokens?: number;
  reasoningTokens?: number;
}

/** The usage this stand-in reports for a request: prompt tokens as o200k counts its texts, completion as streamed. */
export function promptTokensOf(body: { messages?: { content?: unknown }[] }): number {
  let total = 3;
  for (const message of body.messages ?? []) {
    total += 4;
    const content = message.content;
    if (typeof content === "string") total += countTokens(content, { disallowedSpecial: new Set() });
    else if (Array.isArray(content)) {
      for (const part of content) if (typeof part?.text === "string") total += countTokens(part.text, { disallowedSpecial: new Set() });
    }
  }
  return total;
}

export interface UpstreamCall {
  body: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
  /** what it reported (or would have, when the scenario withheld it) */
  usage?: { prompt_tokens: number; completion_tokens: number };
  /** the client hung up before the answer ended */
  clientClosed: boolean;
  /** content chunks written */
  chunks: number;
}

export interface FakeUpstream {
  /** e.g. http://127.0.0.1:4567/v1 (an OpenAI-style base URL) */
  baseUrl: string;
  calls: UpstreamCall[];
  /** what the next requests do (a function: per request) */
  scenario(next: UpstreamScenario | ((body: Record<string, unknown>) => UpstreamScenario)): void;
  close(): Promise<void>;
}

const wait = (ms: number) => (ms > 0 ? new Promise((resolve) => setTimeout(resolve, ms)) : Promise.resolve());

function defaultReply(body: Record<string, unknown>): string {
  const messages = Array.isArray(body.messages) ? (body.messages as { role?: string; content?: unknown }[]) : [];
  const last = [...messages].reverse().find((message) => message.role === "user");
  const said = typeof last?.content === "string" ? last.content.slice(0, 200) : "";
  return `This is creditgate's local stand-in model. You said: ${said}`;
}

async function readJson(request: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>;
}

export async function startFakeUpstream(options: { port?: number; apiKey?: string } = {}): Promise<FakeUpstream> {
  let pick: (body: Record<string, unknown>) => UpstreamScenario = () => ({});
  const calls: UpstreamCall[] = [];

  async function answer(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (request.method !== "POST" || !request.url?.endsWith("/chat/completions")) {
      response.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "not found", type: "invalid_request_error" } }));
      return;
    }
    if (options.apiKey && request.headers.authorization !== `Bearer ${options.apiKey}`) {
      response.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ error: { message: "bad key", type: "invalid_request_error", code: "invalid_api_key" } }));
      return;
    }
    const body = await readJson(request);
    const scenario = pick(body);
    const call: UpstreamCall = { body, headers: request.headers, clientClosed: false, chunks: 0 };
    calls.push(call);
    response.once("close", () => {
      if (!response.writableFinished) call.clientClosed = true;
    });
    if (scenario.status) {
      await wait(scenario.firstTokenDelayMs ?? 0);
      response.writeHead(scenario.status, {
        "content-type": "application/json",
        ...(scenario.retryAfterSeconds !== undefined ? { "retry-after": String(scenario.retryAfterSeconds) } : {}),
      });
      response.end(JSON.stringify({ error: { message: `stand-in refused with ${scenario.status}`, type: scenario.status === 429 ? "rate_limit_error" : "server_error", code: scenario.status } }));
      return;
    }
    const limit = Number(body.max_completion_tokens ?? body.max_tokens ?? Number.POSITIVE_INFINITY);
    const all = encode(scenario.reply ?? defaultReply(body), { disallowedSpecial: new Set() });
    const tokens = all.slice(0, limit);
    const finish = tokens.length < all.length ? "length" : "stop";
    const reasoning = scenario.reasoningTokens ?? 0;
    const usage = {
      prompt_tokens: promptTokensOf(body as { messages?: { content?: unknown }[] }),
      completion_tokens: tokens.length + reasoning,
      total_tokens: 0,
      prompt_tokens_details: { cached_tokens: scenario.cachedTokens ?? 0 },
      completion_tokens_details: { reasoning_tokens: reasoning },
    };
    usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
    call.usage = usage;
    const id = `chatcmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const model = String(body.model);
    if (body.stream !== true) {
      await wait(scenario.firstTokenDelayMs ?? 0);
      await scenario.startWhen;
      response.writeHead(200, { "content-type": "application/json" });
      response.end(
        JSON.stringify({
          id,
          object: "chat.completion",
          created,
          model,
          choices: [{ index: 0, message: { role: "assistant", content: decode(tokens), refusal: null }, finish_reason: finish }],
          ...(scenario.omitUsage ? {} : { usage }),
        }),
      );
      call.chunks = tokens.length;
      return;
    }
    const includeUsage = (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
    const chunk = (delta: Record<string, unknown>, finishReason: string | null) =>
      `data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices: [{ index: 0, delta, finish_reason: finishReason }], ...(includeUsage ? { usage: null } : {}) })}\n\n`;
    response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    response.flushHeaders();
    await wait(scenario.firstTokenDelayMs ?? 0);
    await scenario.startWhen;
    const write = (text: string) => {
      if (!response.destroyed) response.write(text);
    };
    if (scenario.errorEventAfterChunks === 0) {
      write(`data: ${JSON.stringify({ error: { message: "stand-in error event", code: 502 } })}\n\n`);
      response.end();
      return;
    }
    write(chunk({ role: "assistant", content: "" }, null));
    for (const [index, token] of tokens.entries()) {
      if (index > 0) await wait(scenario.tokenDelayMs ?? 0);
      if (scenario.cutAfterChunks !== undefined && index >= scenario.cutAfterChunks) {
        await wait(20); // what was written reaches the client first, as over a real network
        response.socket?.destroy(); // mid-stream, no [DONE], no usage
        return;
      }
      if (scenario.errorEventAfterChunks !== undefined && index >= scenario.errorEventAfterChunks) {
        write(`data: ${JSON.stringify({ error: { message: "stand-in error event", code: 502 } })}\n\n`);
        response.end();
        return;
      }
      write(chunk({ content: decode([token]) }, index === tokens.length - 1 ? finish : null));
      call.chunks += 1;
    }
    if (tokens.length === 0) write(chunk({}, finish));
    if (includeUsage && !scenario.omitUsage) write(`data: ${JSON.stringify({ id, object: "chat.completion.chunk", created, model, choices: [], usage })}\n\n`);
    write("data: [DONE]\n\n");
    response.end();
  }

  const server = createServer((request, response) => {
    answer(request, response).catch(() => {
      if (!response.headersSent) response.writeHead(500).end();
      else response.destroy();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    calls,
    scenario(next) {
      pick = typeof next === "function" ? next : () => next;
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
