import { join } from "node:path";
import { Annotations, Duration } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import type * as logs from "aws-cdk-lib/aws-logs";
import type { Construct } from "constructs";
import { loadConfig, STRIPE_PRICE_VARS, type StripePriceVar } from "../../lib/config.js";
import type { FunctionName } from "../../lib/routes.js";
import { HouseFunction } from "../house-function.js";
import type { Alarms } from "./alarms.js";
import { METRICS_NAMESPACE, SERVICE_NAME, specs } from "./common.js";
import type { LedgerTable } from "./table.js";
import type { StackSecrets } from "./secrets.js";

/**
 * DynamoDB actions per access level of lib/routes.ts. There is no `dynamodb:TransactWriteItems`
 * IAM action: a transaction is authorized item by item against PutItem, UpdateItem, DeleteItem and
 * (for ConditionCheck items) ConditionCheckItem (AWS docs: "Using IAM with DynamoDB transactions").
 * The ledger, billing and sweep write with PutItem/UpdateItem, directly and inside transactions;
 * nothing deletes (TTL does) or scans (only the operator CLI, not a Lambda), so neither is granted.
 */
export const TABLE_ACTIONS = {
  read: ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"],
  readWrite: [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    // Harmless (it writes nothing) and what a transaction's ConditionCheck item needs.
    "dynamodb:ConditionCheckItem",
  ],
} as const;

/** The configuration of the functions (CreditgateStackProps' share of it). */
export interface FunctionsConfig {
  appUrl: string;
  prices?: Partial<Record<StripePriceVar, string>>;
  auth?: { issuer?: string; audience?: string; serviceAudience?: string; jwksUrl?: string };
  authorizeRateLimitPerMinute?: number;
  holdTtlSeconds?: number;
  logRetention: logs.RetentionDays;
  /** Tests only: handler files replacing lib/routes.ts entries (they must lie under projectRoot). */
  entries?: Partial<Record<FunctionName, string>>;
  /** where package-lock.json lives */
  projectRoot: string;
}

/** What every function's environment starts with: its table and the Powertools settings. */
export function baseEnvironment(tableName: string): Record<string, string> {
  return {
    TABLE_NAME: tableName,
    POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
    POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
    POWERTOOLS_LOG_LEVEL: "INFO",
  };
}

/**
 * A function's table statements: item actions (TABLE_ACTIONS of its access) on the table, and,
 * unless `queries` is false, Query on the table and its indexes (the history and the sweep's).
 */
export function grantTable(fn: HouseFunction, access: keyof typeof TABLE_ACTIONS, ledger: Pick<LedgerTable, "table" | "indexArns">, options: { queries?: boolean } = {}): void {
  const queries = options.queries ?? true;
  fn.role.addToPolicy(
    new iam.PolicyStatement({
      sid: "TableItems",
      actions: TABLE_ACTIONS[access].filter((action) => !queries || action !== "dynamodb:Query"),
      resources: [ledger.table.tableArn],
    }),
  );
  if (!queries) return;
  fn.role.addToPolicy(new iam.PolicyStatement({ sid: "TableQueries", actions: ["dynamodb:Query"], resources: [ledger.table.tableArn, ...ledger.indexArns] }));
}

/** The ledger's settings, for every function that authorizes or settles (the API functions, the proxy). */
export function ledgerEnvOf(config: { authorizeRateLimitPerMinute?: number; holdTtlSeconds?: number }): Record<string, string> {
  return {
    AUTHORIZE_RATE_LIMIT_PER_MINUTE: String(config.authorizeRateLimitPerMinute ?? 600),
    HOLD_TTL_SECONDS: String(config.holdTtlSeconds ?? 900),
  };
}

/** The token verifier's settings (lib/runtime.ts authenticatorOf), for every function that takes requests. */
export function authEnvOf(config: { auth?: { issuer?: string; audience?: string; serviceAudience?: string; jwksUrl?: string } }): Record<string, string> {
  return {
    ...(config.auth?.issuer ? { AUTH_ISSUER: config.auth.issuer } : {}),
    ...(config.auth?.audience ? { AUTH_AUDIENCE: config.auth.audience } : {}),
    ...(config.auth?.serviceAudience ? { AUTH_SERVICE_AUDIENCE: config.auth.serviceAudience } : {}),
    ...(config.auth?.jwksUrl ? { AUTH_JWKS_URL: config.auth.jwksUrl } : {}),
  };
}

/**
 * The configured Stripe price ids (unset ones left out), for every function that holds the Stripe
 * key and maps prices to plans and packs (the billing functions, auto top-up).
 */
export function priceEnvOf(config: { prices?: Partial<Record<StripePriceVar, string>> }): Record<string, string> {
  return Object.fromEntries(STRIPE_PRICE_VARS.flatMap((name) => (config.prices?.[name] ? [[name, config.prices[name]]] : [])));
}

/**
 * The environment every function validates at cold start (lib/config.ts), by share: checked here
 * too, so the synth fails on a value the functions would refuse, naming it.
 */
function environmentShares(scope: Construct, config: FunctionsConfig) {
  const ledgerEnv = ledgerEnvOf(config);
  const authEnv = authEnvOf(config);
  const priceEnv = priceEnvOf(config);
  // Secrets stand in as dummies.
  loadConfig(
    { TABLE_NAME: "synth-check", APP_URL: config.appUrl, AUTH_JWT_SECRET: "x".repeat(32), ...ledgerEnv, ...authEnv, ...priceEnv },
    "api",
  );
  if (Object.keys(priceEnv).length === 0) {
    Annotations.of(scope).addWarningV2(
      "creditgate:prices",
      "No Stripe price ids set: subscribe/checkout answer 503 until STRIPE_PRICE_* are given (see docs/deploy.md).",
    );
  }
  return { ledgerEnv, authEnv, priceEnv };
}

/** What the functions use: the table, the secrets they read, the alarms that watch them. */
export interface FunctionsDeps {
  ledger: LedgerTable;
  secrets: StackSecrets;
  alarms: Alarms;
}

/**
 * One Lambda per entry of lib/routes.ts (ids: the entry's name), each with its own role and only
 * the access its spec names (table items and queries at its level, its own secrets), and its
 * error and throttle alarms.
 */
export function addFunctions(
  scope: Construct,
  { ledger: { table, indexArns }, secrets, alarms }: FunctionsDeps,
  config: FunctionsConfig,
): Record<FunctionName, HouseFunction> {
  const { ledgerEnv, authEnv, priceEnv } = environmentShares(scope, config);
  const functions = {} as Record<FunctionName, HouseFunction>;
  for (const [name, spec] of specs()) {
    // With a JWKS URL (OIDC issuer) tokens are verified by public key: no shared JWT secret exists.
    const secretNames = spec.secrets.filter((secret) => !(secret === "AUTH_JWT_SECRET" && config.auth?.jwksUrl));
    // The functions that apply Stripe events (webhook, and the sweep's parked-event retries) or
    // start checkouts hold the Stripe key; they map prices to plans and packs: they get the ids.
    const billing = spec.secrets.includes("STRIPE_SECRET_KEY");
    const environment: Record<string, string> = {
      ...baseEnvironment(table.tableName),
      ...ledgerEnv,
      // Every HTTP function builds its deps from APP_URL (CORS origin, return URLs); the sweep none.
      ...(spec.auth === "schedule" ? {} : { APP_URL: config.appUrl }),
      ...(spec.auth === "jwt" ? authEnv : {}),
      ...(billing ? priceEnv : {}),
      ...Object.fromEntries(secretNames.map((secret) => [`${secret}_ARN`, secrets.secretId(secret)])),
    };
    const fn = new HouseFunction(scope, name, {
      entry: config.entries?.[name] ?? join(config.projectRoot, spec.entry),
      description: `creditgate ${name}: ${spec.routes.join(", ") || spec.schedule || spec.auth}`,
      timeout: Duration.seconds(spec.timeoutSeconds),
      memorySize: spec.memoryMb,
      environment,
      logRetention: config.logRetention,
      projectRoot: config.projectRoot,
      depsLockFilePath: join(config.projectRoot, "package-lock.json"),
    });
    functions[name] = fn;

    grantTable(fn, spec.table, { table, indexArns });
    if (secretNames.length > 0) {
      fn.role.addToPolicy(
        new iam.PolicyStatement({
          sid: "ReadOwnSecrets",
          actions: ["secretsmanager:GetSecretValue"],
          resources: secretNames.map((secret) => secrets.arnForPolicy(secret)),
        }),
      );
    }
    alarms.functionAlarms(name, fn);
  }
  return functions;
}
