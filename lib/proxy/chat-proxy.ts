import { randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import { NotFoundError, UpstreamError, ValidationError } from "../errors.js";
import { authorizeChat, releaseHold, settleChat } from "../ledger/index.js";
import { PROXY_REQUEST_ID_PREFIX } from "../ledger/validation.js";
import { logger } from "../logger.js";
import { countMetric } from "../metrics.js";
import { MAX_INPUT_TOKENS, requireModel } from "../pricing.js";
import { clientWantsUsage, type OutputLimitField, outputTokenLimit, parseChatRequest, promptText, upstreamBody } from "./chat-request.js";
import type { ProxyDeps, ProxyRequest } from "./deps.js";
import { PROXY_METRICS } from "./metrics.js";
import { listModels } from "./models.js";
import { toOpenAIError, upstreamErrorBody } from "./openai-error.js";
import { payerOf } from "./payer.js";
import { type ResponseSink, sendJson, writtenBeforeDeadline } from "./response-sink.js";
import { postUpstream, type UpstreamAnswer } from "./upstream.js";
import { newRelayState, readEvents, relayEvent } from "./sse-relay.js";
import { estimatedOutputTokens, promptTokenBound } from "./token-bound.js";
import type { CallUsage } from "./usage.js";
import { reportedUsage } from "./usage.js";

/**
 * The metered chat proxy: an OpenAI-compatible `POST /v1/chat/completions` that reserves the most
 * a call can cost, forwards it, streams the answer through and charges what it used — the whole
 * authorize/settle loop in one place (docs/proxy.md lists how every kind of ending is charged).
 */

const CLIENT_REQUEST_ID = /^[A-Za-z0-9._@|:+=-]{1,120}$/;

function clientRequestIdOf(headers: ProxyRequest["headers"]): string {
  const given = headers["x-request-id"];
  if (given === undefined) return randomUUID();
  if (!CLIENT_REQUEST_ID.test(given)) {
    throw new ValidationError("X-Request-Id: 1 to 120 letters, digits and ._@|:+=-", "X-Request-Id");
  }
  return given;
}

/** A call with its hold open: what settling or releasing it needs. */
interface OpenCall {
  holdId: string;
  model: string;
  requestId: string;
  inputTokenBound: number;
  maxOutputTokens: number;
}

/**
 * Upstream statuses about the proxy's own provider account, not the client's request: its key
 * refused (401, 403) or its balance out (402, OpenRouter's). Passed on, they would tell the user
 * their token is bad or their credits are gone: they are a 502 instead.
 */
const PROXY_ACCOUNT_STATUSES = new Set([401, 402, 403]);

export async function serveProxyRequest(deps: ProxyDeps, request: ProxyRequest, sink: ResponseSink): Promise<void> {
  const tracked = trackStart(sink);
  try {
    if (request.method === "GET" && request.path === "/v1/models") return await listModels(deps, request, tracked);
    if (request.method === "POST" && request.path === "/v1/chat/completions") return await proxyChatCompletion(deps, request, tracked);
    throw new NotFoundError(`No route ${request.method.slice(0, 10)} ${request.path.slice(0, 100)}`);
  } catch (error) {
    if (tracked.started) {
      // Mid-answer: nothing to say in a status any more; the stream just ends.
      logger.error("proxy failed after the answer started", error as Error);
      await tracked.end().catch(() => undefined);
      return;
    }
    const { status, body, headers } = toOpenAIError(error);
    if (status >= 500 && !(error instanceof UpstreamError)) logger.error("proxy request failed", error as Error);
    await sendJson(tracked, status, body, headers);
  }
}

function trackStart(sink: ResponseSink): ResponseSink & { started: boolean } {
  const tracked = {
    started: false,
    start(status: number, headers: Record<string, string>) {
      tracked.started = true;
      sink.start(status, headers);
    },
    write: (text: string) => sink.write(text),
    end: () => sink.end(),
    get clientGone() {
      return sink.clientGone;
    },
  };
  return tracked;
}

async function proxyChatCompletion(deps: ProxyDeps, request: ProxyRequest, sink: ResponseSink): Promise<void> {
  const userId = await payerOf(deps.auth, request.headers);
  const parsed = parseChatRequest(request.body);
  const model = requireModel(parsed.request.model);
  const clientRequestId = clientRequestIdOf(request.headers);
  const output = outputTokenLimit(parsed.request, deps.defaultMaxOutputTokens);
  const inputTokenBound = promptTokenBound(promptText(parsed.request), model);
  if (inputTokenBound > MAX_INPUT_TOKENS) throw new ValidationError(`messages: longer than ${MAX_INPUT_TOKENS} tokens`, "messages");
  // apart from the gate API's requestIds (which refuses the prefix): the gate never reaches a proxy call's hold
  const requestId = `${PROXY_REQUEST_ID_PREFIX}${clientRequestId}`;
  // One conditional write: 402 here, before anything reaches the provider, when it cannot be afforded.
  const hold = await authorizeChat(
    deps.ledger,
    { userId, requestId, model, inputTokens: inputTokenBound, maxOutputTokens: output.total },
    { openHold: "refuse" },
  ).catch((error: unknown) => {
    throw inClientTerms(error, output.setBy, parsed.request.n ?? 1);
  });
  const call: OpenCall = { holdId: hold.holdId, model, requestId, inputTokenBound, maxOutputTokens: output.total };
  const signal = AbortSignal.timeout(Math.max(1, request.deadline - Date.now()));
  let response: UpstreamAnswer;
  try {
    response = await postUpstream(
      `${deps.upstream.baseUrl.replace(/\/+$/, "")}/chat/completions`,
      {
        "content-type": "application/json",
        accept: parsed.request.stream ? "text/event-stream" : "application/json",
        ...(deps.upstream.apiKey ? { authorization: `Bearer ${deps.upstream.apiKey}` } : {}),
      },
      JSON.stringify(upstreamBody(parsed, deps.defaultMaxOutputTokens)),
      signal,
    );
  } catch (error) {
    await release(deps, call, "upstream unreachable");
    logger.warn("upstream unreachable", { error: (error as Error).message });
    throw new UpstreamError("The model provider could not be reached; nothing was charged");
  }
  const answerHeaders = { "x-request-id": clientRequestId };
  if (response.status < 200 || response.status > 299) return passUpstreamRefusal(deps, call, response, sink, answerHeaders);
  if (parsed.request.stream) return streamThrough(deps, call, response.body, sink, { headers: answerHeaders, wantsUsage: clientWantsUsage(parsed.request), signal });
  return answerWhole(deps, call, response, sink, answerHeaders);
}

/**
 * authorize names the output it reserves `maxOutputTokens`; the client set `max_tokens` or
 * `max_completion_tokens` (times `n`), or nothing and got the proxy's default. A refusal about it
 * names the field the client can change.
 */
function inClientTerms(error: unknown, setBy: OutputLimitField | undefined, choices: number): unknown {
  if (!(error instanceof ValidationError) || error.details.field !== "maxOutputTokens") return error;
  const times = choices > 1 ? ` × n (${choices})` : "";
  const named = setBy ? `${setBy}${times}` : `max_tokens (not given: the proxy's default${times})`;
  return new ValidationError(error.message.replace(/^maxOutputTokens/, named), setBy ?? "max_tokens");
}

/** The upstream refused before any token: nothing is charged, and its status and error go to the client. */
async function passUpstreamRefusal(deps: ProxyDeps, call: OpenCall, response: UpstreamAnswer, sink: ResponseSink, headers: Record<string, string>) {
  await release(deps, call, `upstream ${response.status}`);
  const text = await response.text().catch(() => "");
  const status = PROXY_ACCOUNT_STATUSES.has(response.status) || response.status < 400 ? 502 : response.status;
  if (status !== response.status) logger.error("upstream refused the proxy", { status: response.status });
  const retryAfter = response.header("retry-after");
  const body = status === response.status ? upstreamErrorBody(status, text) : upstreamErrorBody(502, "");
  await sendJson(sink, status, body, { ...headers, ...(retryAfter ? { "retry-after": retryAfter } : {}) });
}

/** A stream's error came before it said anything: the call failed before any token, like a refusal. */
class FailedBeforeFirstToken extends Error {
  constructor(readonly upstreamError: unknown) {
    super("the upstream stream failed before its first token");
  }
}

const SSE_HEADERS = { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no" };

/** The event a client gets when the upstream's stream broke off: OpenAI's SDK raises it as an APIError. */
const CUT_EVENT = `data: ${JSON.stringify({
  error: { message: "The model provider's stream broke off; the answer is incomplete", type: "server_error", code: "upstream_stream_cut", param: null },
})}\n\n`;

/** How long the end of an answer may wait on a client that does not read, once it is charged. */
const END_WAIT_MS = 2_000;

async function streamThrough(
  deps: ProxyDeps,
  call: OpenCall,
  body: Readable,
  sink: ResponseSink,
  options: { headers: Record<string, string>; wantsUsage: boolean; signal: AbortSignal },
): Promise<void> {
  const { headers, wantsUsage, signal } = options;
  const state = newRelayState();
  // Until the stream says something (OpenAI opens with a role-only chunk), its events wait here:
  // an error before any token is then still a refusal with its own status, charged nothing.
  let held: string[] | undefined = [];
  /** the client stopped reading until the deadline: it is written no more, like a client gone */
  let stalled = false;
  /** a promise only when the client is behind: the relay then waits, at most until the deadline */
  const send = (text: string): Promise<void> | undefined => {
    if (sink.clientGone || stalled) return;
    const waiting = sink.write(text);
    if (waiting === undefined) return;
    return writtenBeforeDeadline(waiting, signal).then((inTime) => {
      if (!inTime) stalled = true;
    });
  };
  let broke: unknown;
  try {
    await readEvents(body, (events) => {
      let out = "";
      for (const event of events) {
        const text = relayEvent(event, state, wantsUsage);
        if (held === undefined) {
          if (text !== undefined) out += text;
          continue;
        }
        if (state.error !== undefined && !state.said) throw new FailedBeforeFirstToken(state.error);
        if (text !== undefined) held.push(text);
        if (!state.said) continue;
        sink.start(200, { ...SSE_HEADERS, ...headers });
        out = held.join(""); // the first token leaves with what preceded it
        held = undefined;
      }
      // A client that left is not written to; the upstream is still read to its end for its usage.
      return out ? send(out) : undefined;
    });
    // A stream that ends without [DONE] or usage ended mid-answer, however cleanly it closed.
    if (!state.done && !state.usage) broke = new Error("the stream ended without [DONE]");
  } catch (error) {
    broke = error;
  }
  if (held !== undefined) {
    await release(deps, call, broke instanceof FailedBeforeFirstToken ? "upstream error event" : "upstream stream said nothing");
    const status = broke instanceof FailedBeforeFirstToken ? statusOfStreamError(broke.upstreamError) : 502;
    const detail = broke instanceof FailedBeforeFirstToken ? JSON.stringify({ error: broke.upstreamError }) : "";
    return sendJson(sink, status, upstreamErrorBody(status, detail), headers);
  }
  if (broke !== undefined) {
    logger.warn("upstream stream broke off", { requestId: call.requestId, error: (broke as Error).message });
    await send(CUT_EVENT);
  }
  // Charged first: a client that does not read must not keep the call from being settled.
  await settle(deps, call, state.usage ?? estimate(call, state.produced.join("")));
  await Promise.race([sink.end(), new Promise((resolve) => setTimeout(resolve, END_WAIT_MS).unref())]);
}

/** An in-stream error's status: its numeric code when it has one (OpenRouter's), else 502. */
function statusOfStreamError(error: unknown): number {
  const code = typeof error === "object" && error !== null ? Number((error as { code?: unknown }).code) : Number.NaN;
  return Number.isInteger(code) && code >= 400 && code <= 599 && !PROXY_ACCOUNT_STATUSES.has(code) ? code : 502;
}

async function answerWhole(deps: ProxyDeps, call: OpenCall, response: UpstreamAnswer, sink: ResponseSink, headers: Record<string, string>): Promise<void> {
  let text: string;
  try {
    text = await response.text();
  } catch (error) {
    // The provider ran the call and the answer broke off: charged by the estimate, nothing produced seen.
    logger.warn("upstream answer broke off", { requestId: call.requestId, error: (error as Error).message });
    await settle(deps, call, estimate(call, ""));
    throw new UpstreamError("The model provider's answer broke off; the call was charged for its prompt");
  }
  let answer: unknown;
  try {
    answer = JSON.parse(text);
  } catch {
    answer = undefined;
  }
  const fields = typeof answer === "object" && answer !== null ? (answer as Record<string, unknown>) : {};
  if (fields.error !== undefined && !Array.isArray(fields.choices)) {
    // the provider's error in a 200 body: a failure before any token, as a stream's error event is
    await release(deps, call, "upstream error body");
    const status = statusOfStreamError(fields.error);
    return sendJson(sink, status, upstreamErrorBody(status, JSON.stringify({ error: fields.error })), headers);
  }
  const produced: string[] = [];
  if (Array.isArray(fields.choices)) {
    for (const choice of fields.choices as { message?: { content?: unknown; reasoning?: unknown; refusal?: unknown } }[]) {
      for (const value of [choice?.message?.content, choice?.message?.reasoning, choice?.message?.refusal]) {
        if (typeof value === "string") produced.push(value);
      }
    }
  }
  await settle(deps, call, reportedUsage(fields.usage) ?? estimate(call, produced.length ? produced.join("") : text));
  sink.start(200, { "content-type": "application/json", "cache-control": "no-store", ...headers });
  await sink.write(text);
  await sink.end();
}

/** The documented estimate for a call whose usage never came: the prompt as held, the output as counted. */
function estimate(call: OpenCall, producedText: string): CallUsage {
  return {
    inputTokens: call.inputTokenBound,
    outputTokens: estimatedOutputTokens(producedText, call.model, call.maxOutputTokens),
    cachedInputTokens: 0,
    reasoningTokens: 0,
    source: "estimated",
  };
}

/**
 * Charges a finished call. A failure here cannot reach the client (the answer is out): it is
 * logged, and the hold expires and is released by the sweep (docs/proxy.md, "When settling fails").
 */
async function settle(deps: ProxyDeps, call: OpenCall, usage: CallUsage): Promise<void> {
  if (usage.source === "estimated") countMetric(PROXY_METRICS.estimatedUsage);
  try {
    await settleChat(
      deps.ledger,
      { holdId: call.holdId, inputTokens: usage.inputTokens, outputTokens: usage.outputTokens },
      {
        usage: usage.source,
        ...(usage.cachedInputTokens ? { cachedInputTokens: usage.cachedInputTokens } : {}),
        ...(usage.reasoningTokens ? { reasoningTokens: usage.reasoningTokens } : {}),
      },
    );
  } catch (error) {
    countMetric(PROXY_METRICS.settleFailed);
    logger.error("proxy settle failed; the hold will expire and the sweep release it", { requestId: call.requestId, error: (error as Error).message });
  }
}

async function release(deps: ProxyDeps, call: OpenCall, why: string): Promise<void> {
  try {
    await releaseHold(deps.ledger, { holdId: call.holdId });
  } catch (error) {
    logger.error("proxy release failed; the hold will expire and the sweep release it", { requestId: call.requestId, why, error: (error as Error).message });
  }
}
