import { AppError, RateLimitedError } from "../errors.js";
import { type HttpResult, json } from "./response.js";

export interface ErrorBody {
  error: { code: string; message: string; [detail: string]: unknown };
}

const INTERNAL: ErrorBody = { error: { code: "INTERNAL", message: "Internal error" } };

/**
 * The one mapping from errors to the contract's error body: an AppError keeps its status, code,
 * message and details; anything else is a bare 500 that says nothing about what went wrong.
 */
export function toErrorBody(error: unknown): { status: number; body: ErrorBody; headers: Record<string, string> } {
  if (!(error instanceof AppError)) return { status: 500, body: INTERNAL, headers: {} };
  const headers: Record<string, string> = {};
  if (error instanceof RateLimitedError) headers["Retry-After"] = String(error.details.retryAfterSeconds ?? 60);
  // details first, so a detail can never overwrite the code or message
  return { status: error.status, body: { error: { ...error.details, code: error.code, message: error.message } }, headers };
}

export function errorResponse(error: unknown): HttpResult {
  const { status, body, headers } = toErrorBody(error);
  return json(body, status, headers);
}
