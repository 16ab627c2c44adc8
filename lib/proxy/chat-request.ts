import * as z from "zod/mini";
import "../zod-locale.js";
import { ValidationError } from "../errors.js";
import { MAX_OUTPUT_TOKENS } from "../pricing.js";
import { parseInput } from "../validation.js";
import type { PromptText } from "./token-bound.js";

/**
 * A chat completion request as OpenAI's API takes it (the shape the `openai` SDK and the Vercel AI
 * SDK send). Only what the proxy prices or rewrites is checked; every other field is forwarded as
 * the client sent it. The forwarded body is built from the client's parsed JSON, never from this
 * schema's output, so what is checked and what is sent cannot differ.
 */

const outputLimit = z.nullish(z.number().check(z.int(), z.minimum(1), z.maximum(MAX_OUTPUT_TOKENS)));

/** A content part: text (or an assistant's refusal) is counted; anything else cannot be bounded. */
const contentPart = z.looseObject({ type: z.string(), text: z.optional(z.string()), refusal: z.optional(z.string()) });

const toolCall = z.looseObject({
  function: z.optional(z.looseObject({ name: z.optional(z.string()), arguments: z.optional(z.string()) })),
});

const message = z.looseObject({
  role: z.enum(["system", "developer", "user", "assistant", "tool", "function"]),
  content: z.nullish(z.union([z.string(), z.array(contentPart)])),
  name: z.optional(z.string()),
  tool_calls: z.optional(z.array(toolCall)),
  tool_call_id: z.optional(z.string()),
  refusal: z.nullish(z.string()),
});

export const chatRequestSchema = z.looseObject({
  model: z.string().check(z.minLength(1), z.maxLength(100)),
  messages: z.array(message).check(z.minLength(1), z.maxLength(10_000)),
  stream: z.nullish(z.boolean()),
  stream_options: z.nullish(z.looseObject({ include_usage: z.optional(z.boolean()) })),
  max_tokens: outputLimit,
  max_completion_tokens: outputLimit,
  n: z.nullish(z.number().check(z.int(), z.minimum(1), z.maximum(8))),
});

export type ChatRequest = z.infer<typeof chatRequestSchema>;

/**
 * The fields the proxy forwards: OpenAI's chat completion parameters whose cost the hold bounds.
 * Anything else is refused by name (400), never forwarded: a provider may read a field to run
 * another model (OpenRouter's `models` fallbacks, `route`), bill outside the token usage (its
 * `plugins` web search, `web_search_options`, OpenAI's `service_tier`), add to the prompt after
 * the hold (`plugins`, `prediction`) or produce what the text bound cannot count (`audio`,
 * `modalities`, `reasoning` budgets).
 */
export const FORWARDED_FIELDS = new Set([
  "model",
  "messages",
  "stream",
  "stream_options",
  "max_tokens",
  "max_completion_tokens",
  "n",
  "temperature",
  "top_p",
  "frequency_penalty",
  "presence_penalty",
  "stop",
  "seed",
  "logit_bias",
  "logprobs",
  "top_logprobs",
  "response_format",
  "tools",
  "tool_choice",
  "parallel_tool_calls",
  "functions",
  "function_call",
  "user",
  "safety_identifier",
  "prompt_cache_key",
  "metadata",
  "store",
  "reasoning_effort",
  "verbosity",
]);

/** A body of the proxy, parsed: what the client sent (to forward) and what was checked (to price). */
export interface ParsedChatRequest {
  /** the client's JSON as parsed, forwarded with the proxy's changes only (`upstreamBody`) */
  raw: Record<string, unknown>;
  request: ChatRequest;
}

/**
 * `JSON.parse`, refusing a `__proto__` key anywhere: copied by assignment (as validators and
 * spreads of older code do) it would set an object's prototype, and a field read through it
 * (say `max_tokens`) would differ from the field forwarded.
 */
function parseJson(text: string): unknown {
  return JSON.parse(text, (key, value) => {
    if (key === "__proto__") throw new ValidationError("body: the key __proto__ is not accepted", "body");
    return value;
  });
}

export function parseChatRequest(text: string): ParsedChatRequest {
  let raw: unknown;
  try {
    raw = parseJson(text);
  } catch (error) {
    if (error instanceof ValidationError) throw error;
    throw new ValidationError("body: not valid JSON", "body");
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new ValidationError("body: must be a JSON object", "body");
  const unknown = Object.keys(raw).find((field) => !FORWARDED_FIELDS.has(field));
  if (unknown !== undefined) {
    throw new ValidationError(`${unknown.slice(0, 60)}: not accepted by this proxy (it cannot bound what it costs)`, unknown.slice(0, 60));
  }
  const request = parseInput(chatRequestSchema, raw, { part: "body" });
  for (const [index, entry] of request.messages.entries()) {
    if (!Array.isArray(entry.content)) continue;
    const part = entry.content.find((candidate) => candidate.type !== "text" && candidate.type !== "refusal");
    if (part) {
      // An image, audio or file part costs what the provider says; nothing here can bound it
      // before the call, and a hold that is not an upper bound could let a balance be overspent.
      throw new ValidationError(`messages.${index}.content: only text parts are accepted (got '${part.type.slice(0, 40)}')`, `messages.${index}.content`);
    }
  }
  return { raw: raw as Record<string, unknown>, request };
}

/** Every key and string value inside `value`, depth first: all of it is text a provider may put in the prompt. */
function collectStrings(value: unknown, into: string[]): void {
  if (typeof value === "string") into.push(value);
  else if (Array.isArray(value)) for (const item of value) collectStrings(item, into);
  else if (typeof value === "object" && value !== null) {
    for (const [key, inner] of Object.entries(value)) {
      into.push(key);
      collectStrings(inner, into);
    }
  }
}

/**
 * The texts of a request the bound counts (lib/proxy/token-bound.ts): every string of each
 * message, keys included (its role, name, content parts, tool calls of any kind, a legacy
 * `function_call`, whatever a provider puts in the prompt), and the tool definitions, `tool_choice`
 * and `response_format` as JSON. Counting every string rather than known fields means a field
 * added to the message format later is held, not carried free.
 */
export function promptText(request: ChatRequest): PromptText {
  const messages = request.messages.map((entry) => {
    const texts: string[] = [];
    collectStrings(entry, texts);
    return texts;
  });
  // Sent once, formatted by the provider: counted as their JSON, which is at least as long.
  const shared = ["tools", "functions", "tool_choice", "response_format"]
    .map((field) => (request as Record<string, unknown>)[field])
    .filter((value) => value !== undefined && value !== null)
    .map((value) => JSON.stringify(value));
  return { messages, shared };
}

/** The client's field that sets a call's output limit; none: the proxy's default is written upstream. */
export type OutputLimitField = "max_tokens" | "max_completion_tokens";

/**
 * The output the call may produce: the client's limit (or the default written upstream) for each
 * of `n` choices, and the field it came from (`setBy`), which a refusal of it names.
 */
export function outputTokenLimit(request: ChatRequest, defaultLimit: number): { perChoice: number; total: number; setBy?: OutputLimitField } {
  const { max_tokens: maxTokens, max_completion_tokens: maxCompletionTokens } = request;
  // Both given: a provider may honour either, so the larger bounds the call.
  const setBy: OutputLimitField | undefined =
    typeof maxCompletionTokens === "number" && maxCompletionTokens > (maxTokens ?? -1) ? "max_completion_tokens" : typeof maxTokens === "number" ? "max_tokens" : undefined;
  const perChoice = setBy === undefined ? defaultLimit : (request[setBy] as number);
  return { perChoice, total: perChoice * (request.n ?? 1), ...(setBy ? { setBy } : {}) };
}

/**
 * The body sent upstream: the client's, with a default output limit written in when it gave none
 * (so the hold is a true upper bound) and, when streaming, usage asked for in the stream's last chunk.
 */
export function upstreamBody(parsed: ParsedChatRequest, defaultLimit: number): Record<string, unknown> {
  const body: Record<string, unknown> = { ...parsed.raw };
  if (!outputTokenLimit(parsed.request, defaultLimit).setBy) body.max_tokens = defaultLimit;
  if (parsed.request.stream) body.stream_options = { ...(parsed.request.stream_options ?? {}), include_usage: true };
  return body;
}

/** Whether the client asked to see the usage chunk (it is always asked for upstream). */
export const clientWantsUsage = (request: ChatRequest) => request.stream_options?.include_usage === true;
