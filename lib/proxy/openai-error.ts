import { toErrorBody } from "../http/error-response.js";

/**
 * Errors as OpenAI's API writes them, so OpenAI clients surface them as usual:
 * `{"error":{"message","type","code","param"}}`. The status, message and details come from the one
 * mapper (lib/http/error-response.ts), so a refusal means the same here as on the gate API; only
 * the envelope differs.
 */
export interface OpenAIErrorBody {
  error: { message: string; type: string; code: string | null; param: string | null; [detail: string]: unknown };
}

/** Contract code → OpenAI's error `type` and `code` (OpenAI's own values where it has one). */
const OPENAI_NAMES: Record<string, { type: string; code: string }> = {
  VALIDATION_FAILED: { type: "invalid_request_error", code: "invalid_request" },
  UNKNOWN_MODEL: { type: "invalid_request_error", code: "model_not_found" },
  UNAUTHORIZED: { type: "invalid_request_error", code: "invalid_api_key" },
  FORBIDDEN: { type: "permission_error", code: "forbidden" },
  PLAN_REQUIRED: { type: "permission_error", code: "plan_required" },
  NOT_FOUND: { type: "invalid_request_error", code: "not_found" },
  INSUFFICIENT_CREDITS: { type: "insufficient_quota", code: "insufficient_credits" },
  RATE_LIMITED: { type: "requests", code: "rate_limit_exceeded" },
  REQUEST_IN_PROGRESS: { type: "invalid_request_error", code: "request_in_progress" },
  CONFLICT: { type: "invalid_request_error", code: "conflict" },
  UPSTREAM_ERROR: { type: "server_error", code: "upstream_error" },
};

export function toOpenAIError(error: unknown): { status: number; body: OpenAIErrorBody; headers: Record<string, string> } {
  const { status, body, headers } = toErrorBody(error);
  const { code, message, field, ...details } = body.error;
  const names = OPENAI_NAMES[code] ?? { type: status >= 500 ? "server_error" : "invalid_request_error", code: code.toLowerCase() };
  const out: Record<string, string> = { ...headers };
  // The openai SDK retries 409s and 5xx by itself: a request still in progress must not be.
  if (code === "REQUEST_IN_PROGRESS") out["x-should-retry"] = "false";
  return {
    status,
    headers: out,
    body: { error: { ...details, message, type: names.type, code: names.code, param: typeof field === "string" ? field : null } },
  };
}

/** An upstream's refusal, passed on with its status: its own OpenAI-shaped body when it sent one. */
export function upstreamErrorBody(status: number, text: string): OpenAIErrorBody {
  try {
    const parsed: unknown = JSON.parse(text);
    const inner = typeof parsed === "object" && parsed !== null ? (parsed as { error?: unknown }).error : undefined;
    if (typeof inner === "object" && inner !== null && typeof (inner as { message?: unknown }).message === "string") {
      const { message, type, code, param } = inner as Record<string, unknown>;
      return {
        error: {
          message: message as string,
          type: typeof type === "string" ? type : "upstream_error",
          code: typeof code === "string" ? code : typeof code === "number" ? String(code) : null,
          param: typeof param === "string" ? param : null,
        },
      };
    }
  } catch {
    // not JSON: described below
  }
  return { error: { message: `The model provider answered ${status}`, type: status >= 500 ? "server_error" : "upstream_error", code: null, param: null } };
}
