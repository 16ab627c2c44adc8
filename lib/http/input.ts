import type * as z from "zod/mini";
import { parseInput } from "../validation.js";
import { RejectedBody } from "./body.js";
import type { HttpEvent } from "./response.js";

/** The request body, validated; a body the parser already refused is refused here (after auth). */
export function parseBody<T>(schema: z.ZodMiniType<T>, event: HttpEvent): T {
  if (event.body instanceof RejectedBody) throw event.body.error;
  return parseInput(schema, event.body, { part: "body" });
}

export function parseQuery<T>(schema: z.ZodMiniType<T>, event: HttpEvent): T {
  return parseInput(schema, event.queryStringParameters ?? {}, { part: "query" });
}
