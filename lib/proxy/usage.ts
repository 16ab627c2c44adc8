import { MAX_INPUT_TOKENS, MAX_OUTPUT_TOKENS } from "../pricing.js";

/**
 * What a call used, as the ledger records it. OpenAI's usage counts cached prompt tokens inside
 * `prompt_tokens` and reasoning tokens inside `completion_tokens`; the catalog prices a model's
 * input and output at one rate each, so cached tokens are charged as input and reasoning tokens as
 * output. Both are recorded on the settle entry so a later catalog rate can be audited against them.
 */
export interface CallUsage {
  inputTokens: number;
  outputTokens: number;
  cachedInputTokens: number;
  reasoningTokens: number;
  /** "reported": the upstream's usage; "estimated": counted here because it never came (docs/proxy.md) */
  source: "reported" | "estimated";
}

const count = (value: unknown, max: number): number | undefined =>
  Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) <= max ? (value as number) : undefined;

const detail = (details: unknown, field: string, max: number): number => {
  if (typeof details !== "object" || details === null) return 0;
  return count((details as Record<string, unknown>)[field], max) ?? 0;
};

/**
 * The usage an upstream reported (`usage` of a response or of a stream's last chunk), or undefined
 * when it reported none or nothing usable (then the call is settled by the estimate).
 */
export function reportedUsage(usage: unknown): CallUsage | undefined {
  if (typeof usage !== "object" || usage === null) return undefined;
  const fields = usage as Record<string, unknown>;
  const inputTokens = count(fields.prompt_tokens, MAX_INPUT_TOKENS);
  const outputTokens = count(fields.completion_tokens, MAX_OUTPUT_TOKENS);
  if (inputTokens === undefined || outputTokens === undefined) return undefined;
  return {
    inputTokens,
    outputTokens,
    cachedInputTokens: Math.min(inputTokens, detail(fields.prompt_tokens_details, "cached_tokens", MAX_INPUT_TOKENS)),
    reasoningTokens: Math.min(outputTokens, detail(fields.completion_tokens_details, "reasoning_tokens", MAX_OUTPUT_TOKENS)),
    source: "reported",
  };
}
