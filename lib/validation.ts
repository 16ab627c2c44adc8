import type * as z from "zod/mini";
import { ValidationError } from "./errors.js";

/**
 * Where a parsed value came from, to name the field of a refusal: a named value (`"userId"`, its
 * issues are `userId` or `userId.<path>`), or a whole part of a request (`{ part: "body" }`, its
 * issues are named by their own path, the part itself when the value as a whole is wrong). Without
 * one, an issue of the whole value names no field and reads `input: …`.
 */
export type InputOrigin = string | { part: string };

/** The first zod issue as a ValidationError that names its field (an unknown field by its own name). */
export function toValidationError(error: z.core.$ZodError, origin?: InputOrigin): ValidationError {
  const issue = error.issues[0];
  const path = [typeof origin === "string" ? origin : "", ...(issue?.path ?? []).map(String)].filter(Boolean);
  if (issue?.code === "unrecognized_keys") {
    const field = [...path, issue.keys[0]].join(".");
    return new ValidationError(`${field}: unknown field (not allowed: ${issue.keys.join(", ")})`, field);
  }
  const field = path.length ? path.join(".") : typeof origin === "object" ? origin.part : undefined;
  return new ValidationError(`${field ?? "input"}: ${issue?.message ?? "invalid"}`, field);
}

/** The one validation funnel: parses with a schema, or throws the first issue as a ValidationError (see `toValidationError`). */
export function parseInput<T>(schema: z.ZodMiniType<T>, input: unknown, origin?: InputOrigin): T {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  throw toValidationError(result.error, origin);
}
