import type * as z from "zod/mini";
import { ValidationError } from "../errors.js";
import { RejectedBody } from "./body.js";
import type { HttpEvent } from "./response.js";

/** The first zod issue as a ValidationError naming its field (or the unknown field). */
function toValidationError(error: z.core.$ZodError, where: "body" | "query"): ValidationError {
  const issue = error.issues[0];
  const path = (issue?.path ?? []).map(String);
  if (issue?.code === "unrecognized_keys") {
    const field = [...path, issue.keys[0]].join(".");
    return new ValidationError(`${field}: unknown field (not allowed: ${issue.keys.join(", ")})`, field);
  }
  const field = path.length ? path.join(".") : where;
  return new ValidationError(`${field}: ${issue?.message ?? "invalid"}`, field);
}

/** The request body, validated; a body the parser already refused is refused here (after auth). */
export function parseBody<T>(schema: z.ZodMiniType<T>, event: HttpEvent): T {
  if (event.body instanceof RejectedBody) throw event.body.error;
  const result = schema.safeParse(event.body);
  if (!result.success) throw toValidationError(result.error, "body");
  return result.data;
}

export function parseQuery<T>(schema: z.ZodMiniType<T>, event: HttpEvent): T {
  const result = schema.safeParse(event.queryStringParameters ?? {});
  if (!result.success) throw toValidationError(result.error, "query");
  return result.data;
}
