import type { Config } from "../config.js";
import { config } from "../config.js";
import { authenticatorOf, dynamoClient, ledgerDeps } from "../runtime.js";
import type { ProxyDeps } from "./deps.js";

/** The proxy's deps from a validated config (profile "proxy"). */
export function buildProxyDeps(cfg: Config, client: ReturnType<typeof dynamoClient> = dynamoClient(cfg)): ProxyDeps {
  return {
    ledger: ledgerDeps(cfg, client),
    auth: authenticatorOf(cfg),
    upstream: { baseUrl: cfg.UPSTREAM_BASE_URL, apiKey: cfg.UPSTREAM_API_KEY },
    defaultMaxOutputTokens: cfg.PROXY_MAX_OUTPUT_TOKENS,
  };
}

let cached: ProxyDeps | undefined;

/** The container's proxy deps: config validated and clients created on first call (cold start). */
export function proxyDeps(): ProxyDeps {
  cached ??= buildProxyDeps(config("proxy"));
  return cached;
}
