/**
 * `npm start`: the whole product on one machine. DynamoDB Local (AWS's jar), the table from the
 * shared definition, every function behind a local HTTP API that hands it real API Gateway v2
 * events (routes from lib/routes.ts, the same table the CDK stack reads), and the sweep on a timer.
 *
 *   npm start                      data kept under .local/ (survives restarts)
 *   npm start -- --in-memory       nothing written to disk
 *   PORT=8080 npm start            another port (default 3001)
 *   CREDITGATE_DATA_DIR=dir npm start   another data folder
 *   APP_WEBHOOK_URL= npm start     no outgoing webhooks (default: npm run webhook:listen's address)
 *   UPSTREAM_BASE_URL=… UPSTREAM_API_KEY=… npm start   the chat proxy's real provider (default: a local stand-in)
 *
 * Outgoing webhooks run as deployed, in process: the table's stream is polled and handed to the
 * stream consumer, which queues events on the SQS stand-in (port SQS_LOCAL_PORT, default 9324, so
 * `npm run ops -- webhooks …` finds it); the deliverer posts them, signed, to APP_WEBHOOK_URL.
 *
 * The metered chat proxy (lib/proxy) answers its paths (POST /v1/chat/completions, GET /v1/models)
 * on the same port, streaming as its Function URL does (infra/local/proxy-server.ts). Without an
 * UPSTREAM_BASE_URL it talks to a loopback provider stand-in (infra/local/fake-upstream.ts).
 */
import { createServer, type Server } from "node:http";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { DescribeTableCommand, ResourceNotFoundException } from "@aws-sdk/client-dynamodb";
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2, Context, ScheduledEvent } from "aws-lambda";
import { localDynamoClient } from "../../lib/dynamo/local-client.js";
import { AppError, NotFoundError } from "../../lib/errors.js";
import { errorResponse } from "../../lib/http/error-response.js";
import { createTable } from "../../lib/ledger/create-table.js";
import { withInvocationLogger } from "../../lib/logger.js";
import { EVENT_FUNCTIONS, type EventFunctionName, FUNCTIONS, type FunctionName, type FunctionSpec, routeTable, TOPUP_FUNCTION } from "../../lib/routes.js";
import { sqsClient } from "../../lib/events/runtime.js";
import { localContext, PayloadTooLargeError, readBody, toApiGatewayEvent, writeResult } from "./api-gateway.js";
import { devPrices } from "./dev-prices.js";
import { devSecrets, devToken } from "./dev-secrets.js";
import { isPortFree, JavaMissingError, type LocalDynamo, startDynamoDbLocal } from "./dynamodb-local.js";
import { type LocalEvents, type QueueHandler, type StreamHandler, startLocalEvents } from "./events.js";
import { LOCAL_WEBHOOK_QUEUES, type LocalSqs, startLocalSqs } from "./sqs-local.js";
import { type FakeUpstream, startFakeUpstream } from "./fake-upstream.js";
import { PROXY_ROUTE_KEYS, serveProxyLocally } from "./proxy-server.js";
import type { ProxyDeps } from "../../lib/proxy/deps.js";
import { WEBHOOK_LISTEN_URL } from "./webhook-listen.js";

type Handler = (event: unknown, context: Context) => Promise<unknown>;

const args = new Set(process.argv.slice(2));
const inMemory = args.has("--in-memory");
const port = Number(process.env.PORT ?? 3001);
const dataDir = resolve(process.env.CREDITGATE_DATA_DIR || ".local");
const sweepEverySeconds = Number(process.env.SWEEP_INTERVAL_SECONDS ?? 60);
/** A fixed default so `npm run ops` finds the running local table without being told. */
const dynamoPort = Number(process.env.DYNAMODB_LOCAL_PORT ?? 8000);
/** The SQS stand-in's port: fixed too, for `npm run ops -- webhooks …` (0: any free port). */
const sqsPort = Number(process.env.SQS_LOCAL_PORT ?? 9324);

function fail(message: string): never {
  console.error(`\ncreditgate: ${message}\n`);
  process.exit(1);
}

async function ensureTable(endpoint: string, tableName: string): Promise<void> {
  const client = localDynamoClient(endpoint);
  try {
    await client.send(new DescribeTableCommand({ TableName: tableName }));
  } catch (error) {
    if (!(error instanceof ResourceNotFoundException)) throw error;
    await createTable(client, tableName);
  } finally {
    client.destroy();
  }
}

async function loadHandlers(): Promise<Map<FunctionName, Handler | Error>> {
  const handlers = new Map<FunctionName, Handler | Error>();
  for (const [name, spec] of Object.entries(FUNCTIONS) as [FunctionName, FunctionSpec][]) {
    try {
      const module = (await import(pathToFileURL(resolve(spec.entry)).href)) as { handler: Handler };
      handlers.set(name, module.handler);
    } catch (error) {
      // One function that cannot start (e.g. its config is incomplete) must not take the others down.
      handlers.set(name, error as Error);
      console.error(`creditgate: ${name} (${spec.entry}) failed to load: ${(error as Error).message}`);
    }
  }
  return handlers;
}

/** What a Ctrl-C or SIGTERM must stop, filled in as each part starts. */
const running: {
  dynamo?: Promise<LocalDynamo | undefined>;
  server?: Server;
  sweepTimer?: NodeJS.Timeout;
  sqs?: LocalSqs;
  events?: LocalEvents;
  upstream?: FakeUpstream;
} = {};
const starting = new AbortController();
let stopping = false;

/**
 * Stops everything that has started so far. Registered before anything starts: a signal during
 * start-up (DynamoDB Local still booting, handlers loading) must not leave the Java process behind.
 */
async function stop(): Promise<void> {
  if (stopping) return;
  stopping = true;
  starting.abort(); // a DynamoDB Local still starting kills its Java process and rejects
  clearInterval(running.sweepTimer);
  await running.events?.stop().catch(() => undefined);
  await running.sqs?.stop().catch(() => undefined);
  await running.upstream?.close().catch(() => undefined);
  if (running.server?.listening) {
    running.server.closeAllConnections();
    await new Promise((done) => running.server?.close(done));
  }
  await (await running.dynamo)?.stop();
  console.log("\ncreditgate stopped.");
  process.exit(0);
}
process.on("SIGINT", stop);
process.on("SIGTERM", stop);

async function main(): Promise<void> {
  if (!Number.isInteger(port) || port < 1 || port > 65_535) fail(`PORT must be a port number, got ${process.env.PORT}`);
  for (const [name, candidate] of [["PORT", port], ["DYNAMODB_LOCAL_PORT", dynamoPort], ["SQS_LOCAL_PORT", sqsPort]] as const) {
    if (candidate !== 0 && !(await isPortFree(candidate))) {
      fail(`port ${candidate} is already in use (is creditgate already running?). Stop whatever uses it, or run: ${name}=<another port> npm start`);
    }
  }
  const started = startDynamoDbLocal({ port: dynamoPort, signal: starting.signal, ...(inMemory ? {} : { dataPath: resolve(dataDir, "dynamodb") }) });
  running.dynamo = started.catch(() => undefined);
  let dynamo: LocalDynamo;
  try {
    dynamo = await started;
  } catch (error) {
    if (stopping) return; // stop() is shutting down and exits
    if (error instanceof JavaMissingError) fail(error.message);
    throw error;
  }
  try {
    await serve(dynamo);
  } catch (error) {
    await dynamo.stop(); // never leave the Java process behind
    throw error;
  }
}

async function serve(dynamo: LocalDynamo): Promise<void> {
  const webhookSecretGiven = Boolean(process.env.STRIPE_WEBHOOK_SECRET);
  const secrets = devSecrets(process.env, inMemory ? undefined : resolve(dataDir, "dev-secrets.json"));
  const sqs = await startLocalSqs({ port: sqsPort, queues: LOCAL_WEBHOOK_QUEUES });
  running.sqs = sqs;
  Object.assign(process.env, {
    SQS_ENDPOINT: sqs.endpoint,
    WEBHOOK_QUEUE_URL: sqs.queueUrl("creditgate-webhooks"),
    WEBHOOK_DLQ_URL: sqs.queueUrl("creditgate-webhooks-dlq"),
    // auto top-up's jobs, from the stream consumer to functions/auto-topup.ts
    TOPUP_QUEUE_URL: sqs.queueUrl("creditgate-topups"),
    // set but blank: webhooks off; unset: to `npm run webhook:listen`
    APP_WEBHOOK_URL: process.env.APP_WEBHOOK_URL ?? WEBHOOK_LISTEN_URL,
    // a failing endpoint is retried sooner than when deployed (the first wait 2 s, not 10 s)
    WEBHOOK_RETRY_BASE_SECONDS: process.env.WEBHOOK_RETRY_BASE_SECONDS ?? "2",
    TABLE_NAME: process.env.TABLE_NAME ?? "creditgate-local",
    DYNAMODB_ENDPOINT: dynamo.endpoint,
    AWS_REGION: process.env.AWS_REGION ?? "local",
    APP_URL: process.env.APP_URL ?? "http://localhost:3000",
    POWERTOOLS_LOG_LEVEL: process.env.POWERTOOLS_LOG_LEVEL ?? "WARN",
    POWERTOOLS_METRICS_DISABLED: process.env.POWERTOOLS_METRICS_DISABLED ?? "true",
    ...secrets,
    // with real Stripe keys, real price ids or a 503 naming the missing ones: never made-up ids
    ...(process.env.STRIPE_SECRET_KEY ? {} : devPrices(process.env)),
  });
  await ensureTable(dynamo.endpoint, process.env.TABLE_NAME as string);
  const handlers = await loadHandlers();
  const routes = routeTable();
  const proxy = await loadProxy();

  const server = createServer(async (request, response) => {
    try {
      const path = new URL(request.url ?? "/", "http://localhost").pathname;
      const routeKey = `${(request.method ?? "GET").toUpperCase()} ${path}`;
      if (PROXY_ROUTE_KEYS.has(routeKey)) {
        if (proxy instanceof Error) return writeResult(response, errorResponse(new AppError(503, "INTERNAL", `the chat proxy is not running locally: ${proxy.message}`)));
        return await serveProxyLocally(proxy, request, response);
      }
      const name = routes.get(routeKey);
      const handler = name ? handlers.get(name) : undefined;
      if (!name || !handler) return writeResult(response, errorResponse(new NotFoundError(`No route ${routeKey}`)));
      if (handler instanceof Error) {
        return writeResult(response, errorResponse(new AppError(503, "INTERNAL", `${name} is not running locally: ${handler.message}`)));
      }
      const event: APIGatewayProxyEventV2 = toApiGatewayEvent(request, await readBody(request), routeKey);
      const spec = FUNCTIONS[name] as FunctionSpec;
      const context = localContext(name, spec.timeoutSeconds * 1000);
      // Lambda runs each function in its own process; here each invocation gets its own logger instead.
      writeResult(response, (await withInvocationLogger(context, () => handler(event, context))) as APIGatewayProxyResultV2);
    } catch (error) {
      const tooLarge = error instanceof PayloadTooLargeError;
      if (!tooLarge) console.error("creditgate: local API error", error);
      // anything else is the contract's bare 500 INTERNAL (errorResponse says nothing about a non-AppError)
      if (response.headersSent) return void response.destroy(); // a stream already under way
      writeResult(response, errorResponse(tooLarge ? new AppError(413, "VALIDATION_FAILED", "Request body too large") : error));
    }
  });

  running.server = server;
  await new Promise<void>((resolveListen) => {
    server.once("error", async (error: NodeJS.ErrnoException) => {
      await dynamo.stop();
      if (error.code === "EADDRINUSE") fail(`port ${port} is already in use. Stop whatever uses it, or run: PORT=<another port> npm start`);
      fail(`could not listen on port ${port}: ${error.message}`);
    });
    server.listen(port, "127.0.0.1", () => resolveListen());
  });

  running.events = await startWebhookEvents(dynamo);

  const sweep = handlers.get("monthlyGrantSweep");
  running.sweepTimer = setInterval(async () => {
    if (typeof sweep !== "function") return;
    const event = { "detail-type": "Scheduled Event", source: "aws.events", time: new Date().toISOString() } as ScheduledEvent;
    const context = localContext("monthlyGrantSweep", FUNCTIONS.monthlyGrantSweep.timeoutSeconds * 1000);
    try {
      await withInvocationLogger(context, () => sweep(event, context));
    } catch (error) {
      console.error("creditgate: sweep failed", error);
    }
  }, sweepEverySeconds * 1000);

  const base = `http://127.0.0.1:${port}`;
  const webhook = webhookHint(webhookSecretGiven);
  const userToken = await devToken(process.env, { sub: "dev-user", email: "dev@example.com" });
  const serviceToken = await devToken(process.env, { sub: "dev-chat-backend", scope: "gate" });
  const stripe = process.env.STRIPE_SECRET_KEY ? `configured${process.env.STRIPE_API_BASE ? ` (API at ${process.env.STRIPE_API_BASE})` : ""}` : "not configured: billing routes answer 503 STRIPE_NOT_CONFIGURED (set STRIPE_SECRET_KEY and price ids to enable)";
  console.log(`
creditgate is running at ${base}
  DynamoDB Local  ${dynamo.endpoint} (${inMemory ? "in memory" : `data in ${resolve(dataDir, "dynamodb")}`}), table ${process.env.TABLE_NAME}
  Sweep           every ${sweepEverySeconds}s
  Stripe          ${stripe}
  Webhook         POST ${base}/v1/stripe/webhook (${webhook.secret})
                  try: ${webhook.command}
  Events          ${process.env.APP_WEBHOOK_URL ? `signed webhooks to ${process.env.APP_WEBHOOK_URL}; see them: ${listenCommand()}` : "off (APP_WEBHOOK_URL is blank)"}
  Chat proxy      OpenAI-compatible, streaming: baseURL ${base}/v1 (${proxy instanceof Error ? `not running: ${proxy.message}` : running.upstream ? "model provider: a local stand-in; set UPSTREAM_BASE_URL and UPSTREAM_API_KEY for a real one" : `model provider ${process.env.UPSTREAM_BASE_URL}`})

Dev tokens (valid 24 hours):
  user     (sub dev-user)   ${userToken}
  service  (scope gate)     ${serviceToken}

Try it — authorize a chat, settle it, show the balance (any POSIX sh):
HOLD=$(curl -s -X POST ${base}/v1/gate/authorize -H 'authorization: Bearer ${serviceToken}' -H 'content-type: application/json' -d '{"userId":"dev-user","requestId":"req-'$(date +%s)-$$'","model":"anthropic/claude-sonnet-4.5","inputTokens":1200,"maxOutputTokens":800}' | sed -E 's/.*"holdId":"([^"]+)".*/\\1/'); echo "$HOLD"
curl -s -X POST ${base}/v1/gate/settle -H 'authorization: Bearer ${serviceToken}' -H 'content-type: application/json' -d '{"holdId":"'$HOLD'","inputTokens":1200,"outputTokens":350}'; echo
curl -s ${base}/v1/credits -H 'authorization: Bearer ${userToken}'; echo

Chat through the metered proxy (a streamed answer, charged by its usage):
curl -sN ${base}/v1/chat/completions -H 'authorization: Bearer ${userToken}' -H 'content-type: application/json' -d '{"model":"anthropic/claude-sonnet-4.5","stream":true,"messages":[{"role":"user","content":"Hello!"}]}'

Ctrl-C stops everything.
`);
}

/**
 * The chat proxy's deps, or why it cannot run (it must not take the other functions down). With
 * no UPSTREAM_BASE_URL, a provider stand-in on loopback answers in its place.
 */
async function loadProxy(): Promise<ProxyDeps | Error> {
  try {
    if (!process.env.UPSTREAM_BASE_URL) {
      running.upstream = await startFakeUpstream();
      process.env.UPSTREAM_BASE_URL = running.upstream.baseUrl;
    }
    const { proxyDeps } = await import("../../lib/proxy/runtime.js");
    return proxyDeps();
  } catch (error) {
    console.error(`creditgate: the chat proxy failed to load: ${(error as Error).message}`);
    return error as Error;
  }
}

/** The event functions (functions/stream-consumer.ts, functions/webhook-deliverer.ts) behind the local stream and queue pollers. */
async function startWebhookEvents(dynamo: LocalDynamo): Promise<LocalEvents> {
  const load = async <T>(name: EventFunctionName): Promise<T> => {
    const module = (await import(pathToFileURL(resolve(EVENT_FUNCTIONS[name].entry)).href)) as { handler: Handler };
    return ((event: unknown) => {
      const context = localContext(name, EVENT_FUNCTIONS[name].timeoutSeconds * 1000);
      return withInvocationLogger(context, () => module.handler(event, context));
    }) as T;
  };
  const sqs = sqsClient({ SQS_ENDPOINT: process.env.SQS_ENDPOINT, AWS_REGION: "local" });
  const topUp = (await import(pathToFileURL(resolve(TOPUP_FUNCTION.entry)).href)) as { handler: Handler };
  return startLocalEvents({
    dynamoEndpoint: dynamo.endpoint,
    tableName: process.env.TABLE_NAME as string,
    consume: await load<StreamHandler>("streamConsumer"),
    deliver: { name: "webhook deliverer", handler: await load<QueueHandler>("webhookDeliverer"), sqs, queueUrl: process.env.WEBHOOK_QUEUE_URL as string },
    topUp: {
      name: "auto top-up",
      // one worker: a user's jobs one after another, as the function takes a batch
      workers: 1,
      handler: ((event) => {
        const context = localContext("autoTopUp", TOPUP_FUNCTION.timeoutSeconds * 1000);
        return withInvocationLogger(context, () => topUp.handler(event, context));
      }) as QueueHandler,
      sqs,
      queueUrl: process.env.TOPUP_QUEUE_URL as string,
    },
  });
}

/** `npm run webhook:listen` as it must be typed to find this run's signing secret. */
function listenCommand(): string {
  if (process.env.APP_WEBHOOK_URL !== WEBHOOK_LISTEN_URL) return "your endpoint's logs";
  if (inMemory) return `APP_WEBHOOK_SECRET=${shellWord(process.env.APP_WEBHOOK_SECRET as string)} npm run webhook:listen`;
  return `${process.env.CREDITGATE_DATA_DIR ? `CREDITGATE_DATA_DIR=${shellWord(dataDir)} ` : ""}npm run webhook:listen`;
}

/** Quotes a value for a POSIX shell command line (only when it needs it). */
const shellWord = (value: string) => (/^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`);

/**
 * The webhook line of the banner: a `npm run stripe:event` command that works as printed.
 * stripe:event finds a generated secret in the data folder; in memory nothing is kept, so the
 * dev-only secret (it dies with this process) is printed in full inline; a secret the caller set
 * is theirs to pass on and is not echoed.
 */
function webhookHint(secretGiven: boolean): { secret: string; command: string } {
  // A caller's own secret needs nothing added: they set the same STRIPE_WEBHOOK_SECRET for stripe:event.
  const env: string[] = [];
  if (!secretGiven && inMemory) env.push(`STRIPE_WEBHOOK_SECRET=${shellWord(process.env.STRIPE_WEBHOOK_SECRET as string)}`);
  else if (!secretGiven && process.env.CREDITGATE_DATA_DIR) env.push(`CREDITGATE_DATA_DIR=${shellWord(dataDir)}`);
  const url = port === 3001 ? "" : ` --url http://127.0.0.1:${port}`;
  const command = `${[...env, "npm run stripe:event"].join(" ")} -- invoice.paid --user dev-user${url}`;
  const secret = secretGiven
    ? "signing secret: your STRIPE_WEBHOOK_SECRET; give stripe:event the same one"
    : inMemory
      ? "dev signing secret, in memory only: printed in full below"
      : `dev signing secret kept in ${resolve(dataDir, "dev-secrets.json")}`;
  return { secret, command };
}

// An unexpected start-up failure is one line, not a stack trace (CREDITGATE_DEBUG=1 shows it).
// During a stop, start-up steps fail because DynamoDB Local is going away: stop() exits, not this.
main().catch((error) =>
  stopping ? undefined : fail(error instanceof Error ? (process.env.CREDITGATE_DEBUG ? (error.stack ?? error.message) : error.message) : String(error)),
);
