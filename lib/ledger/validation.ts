import * as z from "zod/mini";
import "../zod-locale.js";
import { ValidationError } from "../errors.js";

const ID_PATTERN = /^[A-Za-z0-9._@|:+=-]+$/;

export const userIdSchema = z
  .string()
  .check(z.minLength(1), z.maxLength(128), z.regex(ID_PATTERN, "may contain letters, digits and ._@|:+=-"));
export const requestIdSchema = z
  .string()
  .check(z.minLength(1), z.maxLength(128), z.regex(ID_PATTERN, "may contain letters, digits and ._@|:+=-"));
export const entryKeySchema = z
  .string()
  .check(z.minLength(1), z.maxLength(200), z.regex(/^[A-Za-z0-9._:#|@+=-]+$/, "may contain letters, digits and ._:#|@+=-"));
/**
 * Credits are whole numbers; a trillion is far beyond any real grant and keeps sums exact.
 * `z.int()` used as a check is what classic `z.number().int()` adds: finite safe integers only.
 */
export const creditAmountSchema = z.number().check(z.int(), z.minimum(-1e12), z.maximum(1e12));

/** Parses with a schema, turning the first issue into a ValidationError that names the field. */
export function parseInput<T>(schema: z.ZodMiniType<T>, input: unknown, field?: string): T {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = [field, ...(issue?.path ?? []).map(String)].filter(Boolean).join(".");
  throw new ValidationError(`${path || "input"}: ${issue?.message ?? "invalid"}`, path || undefined);
}
