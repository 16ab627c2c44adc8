import type { Authenticator } from "../auth.js";
import type { LedgerDeps } from "../ledger/deps.js";

/** What the proxy needs; built once per container (lib/proxy/runtime.ts). */
export interface ProxyDeps {
  ledger: LedgerDeps;
  auth: Authenticator;
  upstream: {
    /** an OpenAI-compatible API's base URL, e.g. https://openrouter.ai/api/v1 */
    baseUrl: string;
    apiKey?: string | undefined;
  };
  /** written into a request that names no output limit, so its hold is a true upper bound */
  defaultMaxOutputTokens: number;
}

/** One HTTP request to the proxy, as either adapter receives it. */
export interface ProxyRequest {
  method: string;
  path: string;
  /** lower-cased names */
  headers: Record<string, string | undefined>;
  body: string;
  /** epoch ms by which the answer must be written (the function's timeout, less a margin) */
  deadline: number;
}
