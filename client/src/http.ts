import createClient, { type Client } from "openapi-fetch";
import { errorFromResponse } from "./errors.js";
import type { paths } from "./generated/openapi.js";

/** Where the API is and who is calling. */
export interface ConnectionOptions {
  /** the API's base URL, e.g. https://api.example.com or http://127.0.0.1:3001 */
  baseUrl: string;
  /** the bearer token, or a function that returns a current one (called before every request) */
  token: string | (() => string | Promise<string>);
  /** a fetch to use instead of the global one (tests, proxies, instrumentation) */
  fetch?: (request: Request) => Promise<Response>;
  /** each attempt's timeout (default 30 s); a timed-out idempotent call is retried like a network error */
  timeoutMs?: number;
}

/** Where the API is, for the public routes (GET /v1/plans): no token is sent. */
export type PublicConnectionOptions = Omit<ConnectionOptions, "token">;

export interface Api {
  client: Client<paths>;
  /** the options of one attempt: its own timeout signal */
  attempt(): { signal: AbortSignal };
}

/** The typed openapi-fetch client, with the bearer token (when there is one) added to every request by a middleware. */
export function connect(options: ConnectionOptions | PublicConnectionOptions): Api {
  const client = createClient<paths>({
    baseUrl: options.baseUrl.replace(/\/+$/, ""),
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
  if ("token" in options) {
    const source = options.token;
    client.use({
      async onRequest({ request }) {
        const token = typeof source === "string" ? source : await source();
        request.headers.set("authorization", `Bearer ${token}`);
        return request;
      },
    });
  }
  const timeoutMs = options.timeoutMs ?? 30_000;
  return { client, attempt: () => ({ signal: AbortSignal.timeout(timeoutMs) }) };
}

/** The body of a 2xx answer, or the contract's error thrown (see errors.ts). */
export async function unwrap<T>(call: Promise<{ data?: T; error?: unknown; response: Response }>): Promise<T> {
  const { data, error, response } = await call;
  if (!response.ok || data === undefined) throw errorFromResponse(response.status, error);
  return data;
}
