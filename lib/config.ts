import * as z from "zod/mini";
import "./zod-locale.js";
import { LEDGER_DEFAULTS } from "./ledger/deps.js";
import { MAX_OUTPUT_TOKENS } from "./pricing.js";

/** OpenRouter's OpenAI-compatible API: the catalog's model ids are its ids. */
export const DEFAULT_UPSTREAM_BASE_URL = "https://openrouter.ai/api/v1";

/**
 * Every environment variable the functions read, validated once at cold start. To add one, add a
 * key to `schema`; `loadConfig` names each bad or missing variable in its error.
 */

/** Deploy tooling often sets a variable to "" instead of leaving it out: treat that as unset. */
const unsetIfBlank = (value: unknown) => (typeof value === "string" && value.trim() === "" ? undefined : value);
/** `schema`, reading a blank value as unset (what classic zod's `z.preprocess(unsetIfBlank, schema)` built). */
const blankAsUnset = <T extends z.ZodMiniType>(schema: T) => z.pipe(z.transform(unsetIfBlank), schema);

const requiredText = () =>
  blankAsUnset(z.string({ error: (issue) => (issue.input === undefined ? "is required" : "must be a string") }));
const optionalText = () => blankAsUnset(z.optional(z.string()));

const isLoopback = (url: URL) => ["localhost", "127.0.0.1", "[::1]"].includes(url.hostname);
const httpUrl = (opts: { httpsUnlessLoopback?: boolean } = {}) =>
  z.string().check(
    z.refine(
      (value) => {
        if (!URL.canParse(value)) return false;
        const url = new URL(value);
        if (url.protocol === "https:") return true;
        return url.protocol === "http:" && (!opts.httpsUnlessLoopback || isLoopback(url));
      },
      { message: opts.httpsUnlessLoopback ? "must be an https URL (http only on localhost)" : "must be an http(s) URL" },
    ),
  );

/** Whole numbers only: "1.5", "1e3" or "ten" are refused rather than coerced. */
const wholeNumber = (fallback: number, min: number, max: number) =>
  blankAsUnset(
    z.pipe(
      z.optional(
        z.pipe(
          z.pipe(z.string().check(z.regex(/^\d{1,9}$/, "must be a whole number")), z.transform(Number)),
          z.number().check(z.int(), z.minimum(min), z.maximum(max)),
        ),
      ),
      z.transform((value) => value ?? fallback),
    ),
  );

const stripePriceId = () =>
  blankAsUnset(z.optional(z.string().check(z.regex(/^price_\w+$/, "must be a Stripe price id (price_…)"))));

/** One price id per paid plan and interval, and per pack (see lib/catalog); read by billing. */
export const STRIPE_PRICE_VARS = [
  "STRIPE_PRICE_PLUS_MONTHLY",
  "STRIPE_PRICE_PLUS_YEARLY",
  "STRIPE_PRICE_PRO_MONTHLY",
  "STRIPE_PRICE_PRO_YEARLY",
  "STRIPE_PRICE_PACK_STARTER",
  "STRIPE_PRICE_PACK_PRO",
  "STRIPE_PRICE_PACK_ENTERPRISE",
] as const;
export type StripePriceVar = (typeof STRIPE_PRICE_VARS)[number];

export const planPriceVar = (plan: string, interval: "month" | "year") =>
  `STRIPE_PRICE_${plan.toUpperCase()}_${interval === "month" ? "MONTHLY" : "YEARLY"}`;
export const packPriceVar = (pack: string) => `STRIPE_PRICE_PACK_${pack.toUpperCase()}`;

const priceShape = Object.fromEntries(STRIPE_PRICE_VARS.map((name) => [name, stripePriceId()])) as Record<
  StripePriceVar,
  ReturnType<typeof stripePriceId>
>;

const schema = z.object({
  TABLE_NAME: z.pipe(requiredText(), z.string().check(z.regex(/^[A-Za-z0-9_.-]{3,255}$/, "must be a DynamoDB table name"))),
  AUTH_JWT_SECRET: blankAsUnset(z.optional(z.string().check(z.minLength(32, "must be at least 32 characters")))),
  AUTH_JWKS_URL: blankAsUnset(z.optional(httpUrl({ httpsUnlessLoopback: true }))),
  AUTH_ISSUER: optionalText(),
  AUTH_AUDIENCE: optionalText(),
  AUTH_SERVICE_AUDIENCE: optionalText(),
  APP_URL: blankAsUnset(z.optional(httpUrl())),
  AUTHORIZE_RATE_LIMIT_PER_MINUTE: wholeNumber(LEDGER_DEFAULTS.authorizeRateLimitPerMinute, 0, 1_000_000),
  HOLD_TTL_SECONDS: wholeNumber(LEDGER_DEFAULTS.holdTtlMs / 1000, 60, 86_400),
  /** how many due parked Stripe events one sweep run retries at most (0: the sweep retries none) */
  PARKED_EVENT_RETRIES_PER_SWEEP: wholeNumber(25, 0, 1_000),
  DYNAMODB_ENDPOINT: blankAsUnset(z.optional(httpUrl())),
  AWS_REGION: optionalText(),
  STRIPE_SECRET_KEY: optionalText(),
  STRIPE_WEBHOOK_SECRET: optionalText(),
  STRIPE_API_BASE: blankAsUnset(z.optional(httpUrl())),
  /** the app's webhook endpoint (lib/events); unset: no event is queued or sent */
  APP_WEBHOOK_URL: blankAsUnset(z.optional(httpUrl({ httpsUnlessLoopback: true }))),
  /** its Standard Webhooks signing secret, whsec_ and base64 */
  APP_WEBHOOK_SECRET: blankAsUnset(z.optional(z.string().check(z.regex(/^whsec_[A-Za-z0-9+/]{16,}={0,2}$/, "must be a Standard Webhooks secret (whsec_ and base64)")))),
  /** the delivery queue and its dead-letter queue (SQS queue URLs) */
  WEBHOOK_QUEUE_URL: blankAsUnset(z.optional(httpUrl())),
  WEBHOOK_DLQ_URL: blankAsUnset(z.optional(httpUrl())),
  /** auto top-up's job queue (lib/topup): the stream consumer sends crossings to it; unset: no auto top-up runs */
  TOPUP_QUEUE_URL: blankAsUnset(z.optional(httpUrl())),
  /** another SQS endpoint: the local stand-in (infra/local/sqs-local.ts) */
  SQS_ENDPOINT: blankAsUnset(z.optional(httpUrl())),
  WEBHOOK_TIMEOUT_SECONDS: wholeNumber(10, 1, 60),
  /** the first retry's wait; each next one doubles (lib/events/retry.ts) */
  WEBHOOK_RETRY_BASE_SECONDS: wholeNumber(10, 1, 3_600),
  /** how long a failing delivery is retried before it is dead-lettered (default 3 days) */
  // at most 3 days: the delivery queue keeps a message 4 days and dead-letters it after 60 receives
  // (infra/constructs/events.ts); a longer window would let SQS delete a message still retrying
  WEBHOOK_GIVE_UP_AFTER_SECONDS: wholeNumber(3 * 86_400, 10, 3 * 86_400),
  /** the metered proxy's model provider: an OpenAI-compatible API (lib/proxy) */
  UPSTREAM_BASE_URL: blankAsUnset(
    z.pipe(z.optional(httpUrl({ httpsUnlessLoopback: true })), z.transform((value) => value ?? DEFAULT_UPSTREAM_BASE_URL)),
  ),
  /** its API key (a secret: UPSTREAM_API_KEY_ARN when deployed) */
  UPSTREAM_API_KEY: optionalText(),
  /** the output limit written into a proxied request that names none, so its hold is a true upper bound */
  PROXY_MAX_OUTPUT_TOKENS: wholeNumber(4_096, 1, MAX_OUTPUT_TOKENS),
  ...priceShape,
});

/**
 * What each kind of function needs beyond the table: the user-facing API verifies tokens and builds
 * URLs from APP_URL; the Stripe webhook and the sweep need neither (least privilege: they are not
 * given the JWT secret at all). The sweep retries parked Stripe events with what the webhook has
 * (STRIPE_SECRET_KEY, STRIPE_API_BASE, the STRIPE_PRICE_* ids), all optional as for the webhook:
 * without them an event that needs them stays parked. Checked even when single variables are bad, so every problem is
 * named at once.
 */
export type ConfigProfile = "api" | "webhook" | "sweep" | "stream" | "deliver" | "proxy" | "topup";

/**
 * The event functions (lib/events): with an endpoint set, the stream consumer needs the queue to
 * hand events to, the deliverer the secret to sign with and the dead-letter queue to give up into.
 */
function eventChecks(set: (name: string) => boolean, profile: ConfigProfile): string[] {
  if (!set("APP_WEBHOOK_URL")) return [];
  const needed = profile === "stream" ? ["WEBHOOK_QUEUE_URL"] : ["APP_WEBHOOK_SECRET", "WEBHOOK_DLQ_URL"];
  return needed.filter((name) => !set(name)).map((name) => `${name} is required when APP_WEBHOOK_URL is set`);
}

function profileChecks(env: Record<string, string | undefined>, profile: ConfigProfile): string[] {
  const set = (name: string) => unsetIfBlank(env[name]) !== undefined;
  if (profile === "stream" || profile === "deliver") return eventChecks(set, profile);
  const auth = set("AUTH_JWT_SECRET") || set("AUTH_JWKS_URL") ? [] : ["AUTH_JWT_SECRET or AUTH_JWKS_URL is required (one of them)"];
  if (profile === "proxy") {
    // A provider on this machine (the local stand-in) needs no key; any other does.
    const base = unsetIfBlank(env.UPSTREAM_BASE_URL);
    const local = typeof base === "string" && URL.canParse(base) && isLoopback(new URL(base));
    return [...auth, ...(set("UPSTREAM_API_KEY") || local ? [] : ["UPSTREAM_API_KEY is required (the model provider's API key)"])];
  }
  if (profile !== "api") return [];
  return [...(set("APP_URL") ? [] : ["APP_URL is required"]), ...auth];
}

export type Config = z.infer<typeof schema>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration: ${problems.join("; ")}`);
    this.name = "ConfigError";
  }
}

/** Pure: validates an environment and returns the typed config, or throws naming every bad variable. */
export function loadConfig(env: Record<string, string | undefined>, profile: ConfigProfile = "api"): Config {
  const result = schema.safeParse(env);
  const problems = [
    ...(result.error?.issues ?? []).map((issue) => `${issue.path.join(".") || "env"} ${issue.message}`),
    ...profileChecks(env, profile),
  ];
  if (result.success && problems.length === 0) return result.data;
  throw new ConfigError(problems);
}

const cached = new Map<ConfigProfile, Config>();

/** The process's config, validated on first use (the functions call it at cold start). */
export function config(profile: ConfigProfile = "api"): Config {
  let loaded = cached.get(profile);
  if (!loaded) {
    loaded = loadConfig(process.env, profile);
    cached.set(profile, loaded);
  }
  return loaded;
}
