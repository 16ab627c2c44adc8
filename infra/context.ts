import { STRIPE_PRICE_VARS, type StripePriceVar } from "../lib/config.js";
import type { SecretName } from "../lib/routes.js";
import type { CreditgateStackProps } from "./stack.js";

/** Used when no appUrl is given, so `cdk synth` works in CI; the app warns, and a deploy should set it. */
export const PLACEHOLDER_APP_URL = "https://app.example.com";

/** Context keys for importing existing secrets by name instead of creating them. */
export const SECRET_NAME_CONTEXT: Record<SecretName, string> = {
  AUTH_JWT_SECRET: "jwtSecretName",
  STRIPE_SECRET_KEY: "stripeSecretKeyName",
  STRIPE_WEBHOOK_SECRET: "stripeWebhookSecretName",
  APP_WEBHOOK_SECRET: "appWebhookSecretName",
  UPSTREAM_API_KEY: "upstreamApiKeySecretName",
};

type Lookup = (key: string) => unknown;

const text = (value: unknown): string | undefined => {
  if (value === undefined || value === null) return undefined;
  const str = String(value).trim();
  return str === "" ? undefined : str;
};

function whole(name: string, value: unknown): number | undefined {
  const str = text(value);
  if (str === undefined) return undefined;
  if (!/^\d{1,9}$/.test(str)) throw new Error(`context ${name} must be a whole number, got "${str}"`);
  return Number(str);
}

/**
 * Stack props from `cdk -c key=value` context, falling back to the environment variable the
 * functions themselves read (APP_URL, STRIPE_PRICE_PRO_MONTHLY, …), so either style works:
 *   npx cdk deploy -c appUrl=https://app.example.com -c STRIPE_PRICE_PRO_MONTHLY=price_123
 * Values are validated by the stack with lib/config's own rules.
 */
export function stackPropsFromContext(
  context: Lookup,
  env: Record<string, string | undefined> = process.env,
): { props: Omit<CreditgateStackProps, "env">; warnings: string[] } {
  const pick = (contextKey: string, envKey?: string) => text(context(contextKey)) ?? (envKey ? text(env[envKey]) : undefined);
  const warnings: string[] = [];

  let appUrl = pick("appUrl", "APP_URL");
  if (!appUrl) {
    appUrl = PLACEHOLDER_APP_URL;
    warnings.push(`appUrl not set: using ${PLACEHOLDER_APP_URL}; deploy with -c appUrl=https://your.app`);
  }

  const prices: Partial<Record<StripePriceVar, string>> = {};
  for (const name of STRIPE_PRICE_VARS) {
    const value = pick(name, name);
    if (value) prices[name] = value;
  }

  const secretNames: Partial<Record<SecretName, string>> = {};
  for (const [secret, key] of Object.entries(SECRET_NAME_CONTEXT) as [SecretName, string][]) {
    const value = pick(key);
    if (value) secretNames[secret] = value;
  }

  const rateLimit = whole("apiRateLimit", pick("apiRateLimit"));
  const burstLimit = whole("apiBurstLimit", pick("apiBurstLimit"));
  const authorizeRateLimitPerMinute = whole(
    "authorizeRateLimitPerMinute",
    pick("authorizeRateLimitPerMinute", "AUTHORIZE_RATE_LIMIT_PER_MINUTE"),
  );
  const holdTtlSeconds = whole("holdTtlSeconds", pick("holdTtlSeconds", "HOLD_TTL_SECONDS"));
  const issuer = pick("authIssuer", "AUTH_ISSUER");
  const audience = pick("authAudience", "AUTH_AUDIENCE");
  const serviceAudience = pick("authServiceAudience", "AUTH_SERVICE_AUDIENCE");
  const jwksUrl = pick("authJwksUrl", "AUTH_JWKS_URL");
  const alarmEmail = pick("alarmEmail");
  const webhookUrl = pick("webhookUrl", "APP_WEBHOOK_URL");
  const upstreamBaseUrl = pick("upstreamBaseUrl", "UPSTREAM_BASE_URL");
  const proxyMaxOutputTokens = whole("proxyMaxOutputTokens", pick("proxyMaxOutputTokens", "PROXY_MAX_OUTPUT_TOKENS"));

  return {
    props: {
      appUrl,
      prices,
      secretNames,
      auth: { issuer, audience, serviceAudience, jwksUrl },
      ...(authorizeRateLimitPerMinute !== undefined ? { authorizeRateLimitPerMinute } : {}),
      ...(holdTtlSeconds !== undefined ? { holdTtlSeconds } : {}),
      ...(alarmEmail ? { alarmEmail } : {}),
      ...(webhookUrl ? { webhookUrl } : {}),
      ...(upstreamBaseUrl ? { upstreamBaseUrl } : {}),
      ...(proxyMaxOutputTokens !== undefined ? { proxyMaxOutputTokens } : {}),
      ...(rateLimit !== undefined || burstLimit !== undefined
        ? { apiThrottle: { rateLimit: rateLimit ?? 100, burstLimit: burstLimit ?? 200 } }
        : {}),
    },
    warnings,
  };
}
