import { join } from "node:path";
import { Annotations, Duration } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import * as lambda from "aws-cdk-lib/aws-lambda";
import type * as logs from "aws-cdk-lib/aws-logs";
import type { Construct } from "constructs";
import { loadConfig } from "../../lib/config.js";
import { PROXY_FUNCTION, type SecretName } from "../../lib/routes.js";
import { HouseFunction } from "../house-function.js";
import type { Alarms } from "./alarms.js";
import { PROXY_NAME } from "./common.js";
import { authEnvOf, baseEnvironment, grantTable, ledgerEnvOf } from "./functions.js";
import type { StackSecrets } from "./secrets.js";
import type { LedgerTable } from "./table.js";

/** The headers a browser may send to the proxy: the bearer token, JSON, a request id, the payer (lib/proxy/payer.ts). */
export const PROXY_CORS_HEADERS = ["authorization", "content-type", "x-request-id", "x-creditgate-user"] as const;

/** The configuration of the chat proxy (CreditgateStackProps' share of it). */
export interface ProxyConfig {
  /** the web app's origin: the Function URL's CORS allows only it */
  appUrl: string;
  auth?: { issuer?: string; audience?: string; serviceAudience?: string; jwksUrl?: string };
  authorizeRateLimitPerMinute?: number;
  holdTtlSeconds?: number;
  /** the model provider's OpenAI-compatible API (UPSTREAM_BASE_URL); default lib/config's */
  upstreamBaseUrl?: string;
  /** PROXY_MAX_OUTPUT_TOKENS; default lib/config's */
  maxOutputTokens?: number;
  logRetention: logs.RetentionDays;
  /** Tests only: a handler file replacing PROXY_FUNCTION.entry (it must lie under projectRoot). */
  entry?: string;
  /** where package-lock.json lives */
  projectRoot: string;
}

export interface ChatProxy {
  function: HouseFunction;
  /** the Function URL (response streaming); output "ProxyUrl" */
  url: lambda.FunctionUrl;
}

const isLoopback = (value: string) => ["localhost", "127.0.0.1", "[::1]"].includes(new URL(value).hostname);

/**
 * The metered chat proxy (lib/routes.ts PROXY_FUNCTION, id "chatProxy"): one function behind a
 * Lambda Function URL in response-streaming mode, not behind the HTTP API, which buffers whole
 * responses (a chat answer must reach the user token by token, for up to PROXY_FUNCTION's
 * timeout). Its own role holds exactly what the chat gate's does on the table (it authorizes and
 * settles the same holds), GetSecretValue on its two secrets, and its log group.
 */
export function addChatProxy(
  scope: Construct,
  { ledger: { table, indexArns }, secrets, alarms }: { ledger: LedgerTable; secrets: StackSecrets; alarms: Alarms },
  config: ProxyConfig,
): ChatProxy {
  const spec = PROXY_FUNCTION;
  // With a JWKS URL (OIDC issuer) tokens are verified by public key: no shared JWT secret exists.
  const secretNames: SecretName[] = spec.secrets.filter((secret) => !(secret === "AUTH_JWT_SECRET" && config.auth?.jwksUrl));

  // The same shares as the ledger functions get (infra/constructs/functions.ts): the proxy
  // authorizes and settles holds like the gate, and verifies user tokens like every jwt function.
  const ledgerEnv = ledgerEnvOf(config);
  const authEnv = authEnvOf(config);
  // Validated as the proxy validates its environment at cold start (profile "proxy"), secrets as
  // dummies, so a value it would refuse fails the synth, naming it. The defaults come from there too.
  const checked = loadConfig(
    {
      TABLE_NAME: "synth-check",
      AUTH_JWT_SECRET: "x".repeat(32),
      UPSTREAM_API_KEY: "synth-check",
      ...ledgerEnv,
      ...authEnv,
      ...(config.upstreamBaseUrl !== undefined ? { UPSTREAM_BASE_URL: config.upstreamBaseUrl } : {}),
      ...(config.maxOutputTokens !== undefined ? { PROXY_MAX_OUTPUT_TOKENS: String(config.maxOutputTokens) } : {}),
    },
    "proxy",
  );
  if (isLoopback(checked.UPSTREAM_BASE_URL)) {
    Annotations.of(scope).addWarningV2(
      "creditgate:upstream",
      `upstreamBaseUrl ${checked.UPSTREAM_BASE_URL} is a loopback address: nothing listens there in Lambda (it is for npm start).`,
    );
  }

  const environment: Record<string, string> = {
    ...baseEnvironment(table.tableName),
    ...ledgerEnv,
    ...authEnv,
    UPSTREAM_BASE_URL: checked.UPSTREAM_BASE_URL,
    PROXY_MAX_OUTPUT_TOKENS: String(checked.PROXY_MAX_OUTPUT_TOKENS),
    // ARNs (or imported names), never values: lib/secrets.ts reads them at cold start.
    ...Object.fromEntries(secretNames.map((secret) => [`${secret}_ARN`, secrets.secretId(secret)])),
  };
  const proxy = new HouseFunction(scope, PROXY_NAME, {
    entry: config.entry ?? join(config.projectRoot, spec.entry),
    description: `creditgate ${PROXY_NAME}: ${spec.paths.join(", ")} (Function URL, streaming)`,
    timeout: Duration.seconds(spec.timeoutSeconds),
    memorySize: spec.memoryMb,
    environment,
    logRetention: config.logRetention,
    projectRoot: config.projectRoot,
    depsLockFilePath: join(config.projectRoot, "package-lock.json"),
  });

  // As the chat gate: item actions on the table, queries on the table and its indexes.
  grantTable(proxy, spec.table, { table, indexArns });
  proxy.role.addToPolicy(
    new iam.PolicyStatement({
      sid: "ReadOwnSecrets",
      actions: ["secretsmanager:GetSecretValue"],
      resources: secretNames.map((secret) => secrets.arnForPolicy(secret)),
    }),
  );

  const url = proxy.fn.addFunctionUrl({
    // No IAM auth on purpose: browsers and the app's server call it with the user's bearer JWT,
    // which the function verifies itself before anything else (lib/auth.ts via lib/proxy, HS256
    // secret or JWKS), exactly as every function behind the HTTP API does (there is no API
    // Gateway authorizer either). AWS_IAM would require SigV4-signed requests, which a browser
    // holding a user token cannot make. An unauthenticated request is answered 401 before any
    // table access or upstream call.
    authType: lambda.FunctionUrlAuthType.NONE,
    // Each write reaches the client as it is made (the handler is awslambda.streamifyResponse);
    // BUFFERED would hold the whole answer and cap it at 6 MB.
    invokeMode: lambda.InvokeMode.RESPONSE_STREAM,
    cors: {
      allowedOrigins: [new URL(config.appUrl).origin],
      allowedMethods: [lambda.HttpMethod.POST, lambda.HttpMethod.GET],
      allowedHeaders: [...PROXY_CORS_HEADERS],
      exposedHeaders: ["x-request-id"],
      maxAge: Duration.hours(1),
    },
  });

  alarms.functionAlarms(PROXY_NAME, proxy);
  alarms.proxySettles();
  return { function: proxy, url };
}
