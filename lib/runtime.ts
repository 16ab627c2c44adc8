import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { type Authenticator, createAuthenticator } from "./auth.js";
import { catalog } from "./catalog.js";
import { type Config, config } from "./config.js";
import { localDynamoClient } from "./dynamo/local-client.js";
import { createDynamoLedgerStore } from "./ledger/dynamo-ledger-store.js";
import { LEDGER_DEFAULTS, type LedgerDeps } from "./ledger/index.js";
import { loadSecretsIntoEnv } from "./secrets.js";
import { createDynamoScheduleStore } from "./sweep/dynamo-schedule-store.js";
import type { ScheduleStore } from "./sweep/schedule-store.js";

// Cold start, before any config is read: secrets named by `<NAME>_ARN` (the CDK stack passes
// Secrets Manager ARNs, never values) become plain variables. A no-op without such variables.
await loadSecretsIntoEnv();

/** What the HTTP functions need, built once per Lambda container from the validated config. */
export interface AppDeps {
  ledger: LedgerDeps;
  auth: Authenticator;
  /** the only origin CORS allows: APP_URL's */
  corsOrigin: string;
}

/** DYNAMODB_ENDPOINT means DynamoDB Local (lib/dynamo/local-client.ts), in AWS_REGION if set. */
export function dynamoClient(cfg: Config): DynamoDBClient {
  if (!cfg.DYNAMODB_ENDPOINT) return new DynamoDBClient({});
  return localDynamoClient(cfg.DYNAMODB_ENDPOINT, { region: cfg.AWS_REGION ?? "local" });
}

export function ledgerDeps(cfg: Config, client: DynamoDBClient): LedgerDeps {
  return {
    store: createDynamoLedgerStore(client, cfg.TABLE_NAME),
    now: Date.now,
    holdTtlMs: cfg.HOLD_TTL_SECONDS * 1000,
    maxOpenHolds: LEDGER_DEFAULTS.maxOpenHolds,
    authorizeRateLimitPerMinute: cfg.AUTHORIZE_RATE_LIMIT_PER_MINUTE,
    catalog,
  };
}

/** The token verifier every function that takes requests uses, from the AUTH_* settings. */
export function authenticatorOf(cfg: Config): Authenticator {
  return createAuthenticator({
    jwtSecret: cfg.AUTH_JWT_SECRET,
    jwksUrl: cfg.AUTH_JWKS_URL,
    issuer: cfg.AUTH_ISSUER,
    audience: cfg.AUTH_AUDIENCE,
    serviceAudience: cfg.AUTH_SERVICE_AUDIENCE,
  });
}

export function buildAppDeps(cfg: Config, client: DynamoDBClient = dynamoClient(cfg)): AppDeps {
  return {
    ledger: ledgerDeps(cfg, client),
    auth: authenticatorOf(cfg),
    // The "api" config profile guarantees APP_URL; loadConfig refuses an api config without it.
    corsOrigin: new URL(cfg.APP_URL ?? "invalid:").origin,
  };
}

let cached: AppDeps | undefined;

/** The container's deps: config validated and clients created on first call (cold start). */
export function appDeps(): AppDeps {
  cached ??= buildAppDeps(config());
  return cached;
}

/** The sweep's ledger part: the ledger and the schedule indexes over one client (billing's part: lib/billing/runtime). */
export function sweepLedgerDeps(cfg: Config, client: DynamoDBClient = dynamoClient(cfg)): { ledger: LedgerDeps; schedule: ScheduleStore } {
  return { ledger: ledgerDeps(cfg, client), schedule: createDynamoScheduleStore(client, cfg.TABLE_NAME) };
}
