import { z } from "zod";
import { ValidationError } from "../errors.js";

const ID_PATTERN = /^[A-Za-z0-9._@|:+=-]+$/;

export const userIdSchema = z.string().min(1).max(128).regex(ID_PATTERN, "may contain letters, digits and ._@|:+=-");
export const requestIdSchema = z.string().min(1).max(128).regex(ID_PATTERN, "may contain letters, digits and ._@|:+=-");
export const entryKeySchema = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9._:#|@+=-]+$/, "may contain letters, digits and ._:#|@+=-");
/** Credits are whole numbers; a trillion is far beyond any real grant and keeps sums exact. */
export const creditAmountSchema = z.number().int().min(-1e12).max(1e12);

/** Parses with a schema, turning the first issue into a ValidationError that names the field. */
export function parseInput<T>(schema: z.ZodType<T>, input: unknown, field?: string): T {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = [field, ...(issue?.path ?? []).map(String)].filter(Boolean).join(".");
  throw new ValidationError(`${path || "input"}: ${issue?.message ?? "invalid"}`, path || undefined);
}
