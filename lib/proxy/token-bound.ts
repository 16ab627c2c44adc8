import { countTokens } from "gpt-tokenizer/encoding/o200k_base";

/**
 * How many tokens a chat can use, before the call (the hold) and after a stream that never said
 * (the estimate). A money rule, pure: the proxy (lib/proxy/chat-proxy.ts) only calls it.
 *
 * The tokenizer is gpt-tokenizer's `o200k_base`, the encoding of OpenAI's current models, so an
 * `openai/…` model's text is counted exactly (texts longer than 2,000 characters in slices: at
 * most one token more per slice). Other providers tokenize differently and publish no
 * JavaScript tokenizer; their count is bounded two ways and the smaller bound is held:
 *   - `PROVIDER_MARGIN` × the o200k count (Claude, Gemini and Mistral tokenizers produce up to
 *     about a quarter more tokens than o200k on English and code; 1.3 leaves room above that);
 *   - the UTF-8 byte count: every BPE and SentencePiece (byte-fallback) token covers at least one
 *     byte of the text, so no tokenizer yields more tokens than bytes.
 * The upstream's reported usage is what is charged; the bound only sizes the hold (docs/proxy.md).
 */

/** Chat framing a tokenizer adds around each message (role markers, separators), and once to prime the reply. */
export const TOKENS_PER_MESSAGE = 4;
export const TOKENS_PER_REPLY = 3;
export const PROVIDER_MARGIN = 1.3;

/** The margin for a catalog model: exact for OpenAI's own models, PROVIDER_MARGIN for the rest. */
export function tokenizerMargin(model: string): number {
  return model.startsWith("openai/") ? 1 : PROVIDER_MARGIN;
}

/** Counts special-token text (`<|endoftext|>`) as the plain text it is: a prompt may contain it. */
const PLAIN = { disallowedSpecial: new Set<string>() } as const;

/**
 * Slices a text is counted in. BPE over one long run without a break (a letter repeated 100,000
 * times) takes time quadratic in its length; counted in slices it is linear. A boundary cuts what
 * would have been one token in two, so slices count at least as many tokens in practice; one
 * more per boundary covers a rare split that merges better. The byte count caps it anyway.
 */
const SLICE_CHARS = 2_000;

function slicedCount(text: string): number {
  if (text.length <= SLICE_CHARS) return countTokens(text, PLAIN);
  let total = 0;
  let slices = 0;
  for (let start = 0; start < text.length; slices++) {
    let end = Math.min(text.length, start + SLICE_CHARS);
    // never split a surrogate pair (one character's two halves would each count as a token)
    if (end < text.length && /[\uD800-\uDBFF]/.test(text.charAt(end - 1))) end -= 1;
    total += countTokens(text.slice(start, end), PLAIN);
    start = end;
  }
  return total + slices - 1;
}

/** The most tokens `text` can be for `model`'s tokenizer (see above). */
export function textTokenBound(text: string, model: string): number {
  if (text.length === 0) return 0;
  const bytes = Buffer.byteLength(text, "utf8");
  const counted = Math.ceil(slicedCount(text) * tokenizerMargin(model));
  return Math.min(counted, bytes);
}

/** A prompt as the bound sees it: each message's texts, and texts sent once (tool definitions, a response schema). */
export interface PromptText {
  messages: string[][];
  shared: string[];
}

/** The most input tokens a prompt can be: every text bounded, plus the chat framing. */
export function promptTokenBound(prompt: PromptText, model: string): number {
  let total = TOKENS_PER_REPLY;
  for (const texts of prompt.messages) {
    total += TOKENS_PER_MESSAGE;
    for (const text of texts) total += textTokenBound(text, model);
  }
  for (const text of prompt.shared) total += textTokenBound(text, model);
  return total;
}

/**
 * What a stream that ended without a usage report is charged for its output: the streamed text
 * counted as the hold counts text, at most the output the hold allowed.
 */
export function estimatedOutputTokens(streamedText: string, model: string, maxOutputTokens: number): number {
  return Math.min(textTokenBound(streamedText, model), maxOutputTokens);
}
