import * as z from "zod/mini";
import "../zod-locale.js";

/**
 * What the ledger accepts: the ids and amounts of its inputs, and the inputs of the gate's three
 * calls, each written once. The gate routes (lib/http/schemas.ts) make their bodies from these:
 * strict, with the token counts bounded before anything is priced. Parsed through the one
 * validation funnel, lib/validation.ts.
 */

const ID_PATTERN = /^[A-Za-z0-9._@|:+=-]+$/;

export const userIdSchema = z
  .string()
  .check(z.minLength(1), z.maxLength(128), z.regex(ID_PATTERN, "may contain letters, digits and ._@|:+=-"));
export const requestIdSchema = z
  .string()
  .check(z.minLength(1), z.maxLength(128), z.regex(ID_PATTERN, "may contain letters, digits and ._@|:+=-"));
/**
 * RequestIds the metered chat proxy (lib/proxy) gives its holds: `proxy:` and the client's
 * X-Request-Id. The gate API may not use the prefix, so a gate caller can never reach (and
 * release) a proxy call's open hold by naming its requestId.
 */
export const PROXY_REQUEST_ID_PREFIX = "proxy:";
/** A requestId as the gate API takes it: any but the proxy's. */
export const gateRequestIdSchema = requestIdSchema.check(
  z.regex(/^(?!proxy:)/, "may not start with proxy: (the chat proxy's requestIds)"),
);
export const entryKeySchema = z
  .string()
  .check(z.minLength(1), z.maxLength(200), z.regex(/^[A-Za-z0-9._:#|@+=-]+$/, "may contain letters, digits and ._:#|@+=-"));
/**
 * Credits are whole numbers; a trillion is far beyond any real grant and keeps sums exact.
 * `z.int()` used as a check is what classic `z.number().int()` adds: finite safe integers only.
 */
export const creditAmountSchema = z.number().check(z.int(), z.minimum(-1e12), z.maximum(1e12));

/** A hold id as the gate receives it; decoding it (lib/ledger/hold-id.ts) is what tells whether it is one. */
export const holdIdSchema = z.string().check(z.minLength(1), z.maxLength(1024));

/** A model id as the gate receives it; the catalog (lib/pricing.ts, requireModel) says whether it is one. */
export const modelSchema = z.string().check(z.minLength(1), z.maxLength(100));

/** authorize: the token counts are checked where the call is priced (lib/pricing.ts). */
export const authorizeInputSchema = z.object({
  userId: userIdSchema,
  requestId: requestIdSchema,
  model: modelSchema,
  inputTokens: z.number(),
  maxOutputTokens: z.number(),
});

/** settle: the token counts are checked before any read (lib/pricing.ts, checkTokenCounts). */
export const settleInputSchema = z.object({
  holdId: holdIdSchema,
  inputTokens: z.number(),
  outputTokens: z.number(),
});

/** release: the hold id and nothing else. */
export const releaseInputSchema = z.strictObject({ holdId: holdIdSchema });
