import { z } from "zod";
import { requestIdSchema, userIdSchema } from "../ledger/validation.js";
import { MAX_INPUT_TOKENS, MAX_OUTPUT_TOKENS } from "../pricing.js";

/**
 * Every body and query the API accepts. Objects are strict, so an unknown field is a 400 that
 * names it (a typo such as `outputToken` must not be silently priced as zero).
 */
const tokenCount = (max: number) => z.number().int().min(0).max(max);
const holdId = z.string().min(1).max(1024);

export const authorizeBody = z.strictObject({
  userId: userIdSchema,
  requestId: requestIdSchema,
  model: z.string().min(1).max(100),
  inputTokens: tokenCount(MAX_INPUT_TOKENS),
  maxOutputTokens: tokenCount(MAX_OUTPUT_TOKENS),
});

export const settleBody = z.strictObject({
  holdId,
  inputTokens: tokenCount(MAX_INPUT_TOKENS),
  outputTokens: tokenCount(MAX_OUTPUT_TOKENS),
});

export const releaseBody = z.strictObject({ holdId });

/** Query values arrive as strings (API Gateway joins repeated keys with commas). */
export const historyQuery = z.strictObject({
  limit: z
    .string()
    .regex(/^\d{1,3}$/, "must be a whole number")
    .transform(Number)
    .pipe(z.number().int().min(1).max(100))
    .optional(),
  cursor: z.string().min(1).max(64).optional(),
});

export const noQuery = z.strictObject({});
