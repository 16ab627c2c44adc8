/**
 * Every Lambda function, its HTTP routes and what it may touch — the one table the CDK stack,
 * the local server (`npm start`) and the tests all read, so a route exists everywhere or nowhere.
 */
export type TableAccess = "read" | "readWrite";
export type SecretName = "AUTH_JWT_SECRET" | "STRIPE_SECRET_KEY" | "STRIPE_WEBHOOK_SECRET" | "APP_WEBHOOK_SECRET" | "UPSTREAM_API_KEY";

export interface FunctionSpec {
  /** path of the handler file from the repo root; it exports `handler` */
  entry: string;
  /** API Gateway HTTP API route keys ("METHOD /path") */
  routes: string[];
  /** "jwt": the function verifies a bearer token itself; "none": the webhook (the signature is the auth) */
  auth: "jwt" | "none" | "schedule";
  table: TableAccess;
  secrets: SecretName[];
  /** EventBridge schedule expression for scheduled functions */
  schedule?: string;
  timeoutSeconds: number;
  memoryMb: number;
}

export const FUNCTIONS = {
  chatGate: {
    entry: "functions/chat-gate.ts",
    routes: ["POST /v1/gate/authorize", "POST /v1/gate/settle", "POST /v1/gate/release"],
    auth: "jwt",
    table: "readWrite",
    secrets: ["AUTH_JWT_SECRET"],
    timeoutSeconds: 10,
    memoryMb: 1024,
  },
  credits: {
    entry: "functions/credits.ts",
    // and the OpenAPI document and the plans (pricing pages): public and static, so they ride on the
    // read-only reader rather than costing a Lambda of their own (functions/credits.ts serves them
    // before asking for a token)
    routes: ["GET /v1/credits", "GET /v1/credits/history", "GET /v1/plans", "GET /v1/openapi.json"],
    auth: "jwt",
    table: "read",
    secrets: ["AUTH_JWT_SECRET"],
    timeoutSeconds: 10,
    memoryMb: 512,
  },
  subscribe: {
    entry: "functions/subscribe.ts",
    // everything that changes what a user pays: the one billing function that writes on request
    routes: [
      "POST /v1/billing/subscribe",
      "POST /v1/billing/checkout",
      "POST /v1/billing/change-plan",
      "POST /v1/billing/cancel",
      "GET /v1/billing/auto-topup",
      "PUT /v1/billing/auto-topup",
      "POST /v1/billing/payment-method",
    ],
    auth: "jwt",
    table: "readWrite",
    secrets: ["AUTH_JWT_SECRET", "STRIPE_SECRET_KEY"],
    timeoutSeconds: 15,
    memoryMb: 512,
  },
  portal: {
    entry: "functions/portal.ts",
    routes: ["POST /v1/billing/portal"],
    auth: "jwt",
    // it only reads the account's Stripe customer: no write access it does not need
    table: "read",
    secrets: ["AUTH_JWT_SECRET", "STRIPE_SECRET_KEY"],
    timeoutSeconds: 15,
    memoryMb: 512,
  },
  webhook: {
    entry: "functions/webhook.ts",
    routes: ["POST /v1/stripe/webhook"],
    auth: "none",
    table: "readWrite",
    secrets: ["STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"],
    timeoutSeconds: 20,
    memoryMb: 512,
  },
  monthlyGrantSweep: {
    entry: "functions/monthly-grant-sweep.ts",
    routes: [],
    auth: "schedule",
    table: "readWrite",
    // it retries parked Stripe events as the webhook applies them: the Stripe key (a checkout's
    // subscription is fetched from Stripe) and, with it, the price ids (infra/constructs/functions.ts)
    secrets: ["STRIPE_SECRET_KEY"],
    // Every 10 minutes: holds expire after 15 minutes by default, and a cut-off run resumes soon.
    schedule: "rate(10 minutes)",
    timeoutSeconds: 300,
    memoryMb: 1024,
  },
} as const satisfies Record<string, FunctionSpec>;

export type FunctionName = keyof typeof FUNCTIONS;

/** routeKey → function name, for the local server and route tests. */
export function routeTable(): Map<string, FunctionName> {
  const table = new Map<string, FunctionName>();
  for (const [name, spec] of Object.entries(FUNCTIONS) as [FunctionName, FunctionSpec][]) {
    for (const route of spec.routes) {
      if (table.has(route)) throw new Error(`route ${route} is served twice`);
      table.set(route, name);
    }
  }
  return table;
}

/**
 * The functions of the outgoing webhooks (lib/events), which serve no route and touch no table
 * item: the stream consumer reads the table's change stream (its event source mapping grants
 * that) and queues events; the deliverer takes them off the queue and posts them to the app.
 * `npm start` runs both in process (infra/local/events.ts), the CDK stack as Lambdas
 * (infra/constructs/events.ts).
 */
export interface EventFunctionSpec {
  entry: string;
  trigger: "stream" | "queue";
  secrets: SecretName[];
  timeoutSeconds: number;
  memoryMb: number;
}

export const EVENT_FUNCTIONS = {
  streamConsumer: {
    entry: "functions/stream-consumer.ts",
    trigger: "stream",
    secrets: [],
    timeoutSeconds: 30,
    memoryMb: 256,
  },
  webhookDeliverer: {
    entry: "functions/webhook-deliverer.ts",
    trigger: "queue",
    secrets: ["APP_WEBHOOK_SECRET"],
    // a batch of 10 posted concurrently, each with its own timeout (WEBHOOK_TIMEOUT_SECONDS ≤ 60)
    timeoutSeconds: 90,
    memoryMb: 256,
  },
} as const satisfies Record<string, EventFunctionSpec>;

export type EventFunctionName = keyof typeof EVENT_FUNCTIONS;

/**
 * The metered chat proxy (lib/proxy): its own function, because API Gateway HTTP APIs buffer
 * responses and a chat stream must not be. Deployed behind a Lambda Function URL with response
 * streaming (infra/constructs/proxy.ts); `npm start` serves its paths streaming on the local port
 * (infra/local/proxy-server.ts). It verifies tokens itself, as every function does.
 */
export const PROXY_FUNCTION = {
  entry: "functions/chat-proxy.ts",
  /** "METHOD /path" it answers; anything else is a 404 in OpenAI's error shape */
  paths: ["POST /v1/chat/completions", "GET /v1/models"],
  table: "readWrite",
  secrets: ["AUTH_JWT_SECRET", "UPSTREAM_API_KEY"],
  // a long answer streams for minutes; holds live 15 (LEDGER_DEFAULTS.holdTtlMs), so one is never
  // expired by the sweep while its call can still be running
  timeoutSeconds: 600,
  memoryMb: 1024,
} as const satisfies Omit<FunctionSpec, "routes" | "auth"> & { paths: readonly string[] };

/**
 * Auto top-up's function (lib/topup): it takes the threshold crossings the stream consumer queues
 * (its own SQS queue), charges the user's saved card through a one-off Stripe invoice and writes
 * the top-up's state. `npm start` runs it in process on the SQS stand-in (infra/local/events.ts);
 * the CDK stack as a Lambda with an SQS event source (infra/constructs/auto-top-up.ts).
 */
export const TOPUP_FUNCTION = {
  entry: "functions/auto-topup.ts",
  trigger: "queue",
  table: "readWrite",
  // it charges saved cards (the pack price ids come with the key, as for the webhook)
  secrets: ["STRIPE_SECRET_KEY"],
  // a batch of jobs one after another, each a few Stripe calls (10 s timeout, 2 SDK retries each)
  timeoutSeconds: 120,
  memoryMb: 512,
} as const satisfies Omit<EventFunctionSpec, "trigger"> & { trigger: "queue"; table: TableAccess };
