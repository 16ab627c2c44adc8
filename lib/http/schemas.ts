import * as z from "zod/mini";
import "../zod-locale.js";
import { authorizeInputSchema, gateRequestIdSchema, releaseInputSchema, settleInputSchema } from "../ledger/validation.js";
import { MAX_INPUT_TOKENS, MAX_OUTPUT_TOKENS } from "../pricing.js";

/**
 * Every body and query the API accepts. Objects are strict, so an unknown field is a 400 that
 * names it (a typo such as `outputToken` must not be silently priced as zero).
 */
const tokenCount = (max: number) => z.number().check(z.int(), z.minimum(0), z.maximum(max));

/** The gate's bodies: the ledger's own inputs (lib/ledger/validation.ts), strict, with bounded token counts. */
export const authorizeBody = z.strictObject({
  ...authorizeInputSchema.shape,
  requestId: gateRequestIdSchema,
  inputTokens: tokenCount(MAX_INPUT_TOKENS),
  maxOutputTokens: tokenCount(MAX_OUTPUT_TOKENS),
});

export const settleBody = z.strictObject({
  ...settleInputSchema.shape,
  inputTokens: tokenCount(MAX_INPUT_TOKENS),
  outputTokens: tokenCount(MAX_OUTPUT_TOKENS),
});

export const releaseBody = releaseInputSchema;

/** Query values arrive as strings (API Gateway joins repeated keys with commas). */
export const historyQuery = z.strictObject({
  limit: z.optional(
    z.pipe(
      z.pipe(z.string().check(z.regex(/^\d{1,3}$/, "must be a whole number")), z.transform(Number)),
      z.number().check(z.int(), z.minimum(1), z.maximum(100)),
    ),
  ),
  cursor: z.optional(z.string().check(z.minLength(1), z.maxLength(64))),
});

export const noQuery = z.strictObject({});
