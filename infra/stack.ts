import { fileURLToPath } from "node:url";
import { CfnOutput, Stack, type StackProps, Tags } from "aws-cdk-lib";
import type { HttpApi } from "aws-cdk-lib/aws-apigatewayv2";
import type * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import * as logs from "aws-cdk-lib/aws-logs";
import type * as secretsmanager from "aws-cdk-lib/aws-secretsmanager";
import type * as sns from "aws-cdk-lib/aws-sns";
import type * as sqs from "aws-cdk-lib/aws-sqs";
import type { Construct } from "constructs";
import type { StripePriceVar } from "../lib/config.js";
import type { FunctionName, SecretName } from "../lib/routes.js";
import { Alarms } from "./constructs/alarms.js";
import { addAutoTopUp, type AutoTopUp } from "./constructs/auto-top-up.js";
import { addFunctions } from "./constructs/functions.js";
import { addHttpApi } from "./constructs/http-api.js";
import { addChatProxy, type ChatProxy } from "./constructs/proxy.js";
import { addWebhookEvents, type WebhookEvents } from "./constructs/events.js";
import { addSchedules } from "./constructs/schedule.js";
import type { ProxyFunctionName, TopUpFunctionName } from "./constructs/common.js";
import { StackSecrets } from "./constructs/secrets.js";
import { addLedgerTable } from "./constructs/table.js";
import type { HouseFunction } from "./house-function.js";

export { METRICS_NAMESPACE, SERVICE_NAME } from "./constructs/common.js";
export { TABLE_ACTIONS } from "./constructs/functions.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

export interface CreditgateStackProps extends StackProps {
  /** the web app's origin: CORS allows only it; Checkout/portal return URLs are built from it */
  appUrl: string;
  /** Stripe price ids by env var name (lib/config STRIPE_PRICE_VARS); unset ones are left out */
  prices?: Partial<Record<StripePriceVar, string>>;
  auth?: { issuer?: string; audience?: string; serviceAudience?: string; jwksUrl?: string };
  authorizeRateLimitPerMinute?: number;
  holdTtlSeconds?: number;
  /** use existing Secrets Manager secrets (by name) instead of creating them */
  secretNames?: Partial<Record<SecretName, string>>;
  /** subscribed (email) to the alarm topic */
  alarmEmail?: string;
  /** the app's webhook endpoint (https); unset: no event is queued or sent (docs/webhooks.md) */
  webhookUrl?: string;
  /** HTTP API default-stage throttling (requests per second, burst) */
  apiThrottle?: { rateLimit: number; burstLimit: number };
  /** the chat proxy's model provider, an OpenAI-compatible API (UPSTREAM_BASE_URL; default lib/config's, OpenRouter) */
  upstreamBaseUrl?: string;
  /** the output limit the chat proxy writes into a request that names none (PROXY_MAX_OUTPUT_TOKENS; default 4096) */
  proxyMaxOutputTokens?: number;
  logRetention?: logs.RetentionDays;
  /** Tests only: handler files replacing lib/routes.ts entries (they must lie under projectRoot). */
  entries?: Partial<Record<FunctionName | ProxyFunctionName | TopUpFunctionName, string>>;
  /** where package-lock.json lives (default: this repository) */
  projectRoot?: string;
}

/**
 * creditgate in one stack: the table, one Lambda per entry of lib/routes.ts FUNCTIONS, the HTTP
 * API with exactly those routes, the sweep's schedule, the outgoing webhooks, the chat proxy on
 * its own Function URL, auto top-up (its queue and function), secrets, least-privilege roles and alarms.
 * Each part is in infra/constructs/ and adds its resources to this stack, under the ids (and so
 * the logical ids) they have always had.
 */
export class CreditgateStack extends Stack {
  readonly table: dynamodb.Table;
  readonly functions: Record<FunctionName, HouseFunction>;
  readonly secrets: Map<SecretName, secretsmanager.ISecret>;
  readonly api: HttpApi;
  readonly alarmTopic: sns.Topic;
  readonly sweepDlq: sqs.Queue;
  readonly webhooks: WebhookEvents;
  readonly proxy: ChatProxy;
  readonly autoTopUp: AutoTopUp;

  constructor(scope: Construct, id: string, props: CreditgateStackProps) {
    super(scope, id, props);
    Tags.of(this).add("app", "creditgate");
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;

    const ledger = addLedgerTable(this);
    this.table = ledger.table;
    const alarms = new Alarms(this, props.alarmEmail);
    this.alarmTopic = alarms.topic;
    const secrets = new StackSecrets(this, props.secretNames);
    this.secrets = secrets.all;
    this.functions = addFunctions(this, { ledger, secrets, alarms }, { ...props, logRetention, projectRoot: props.projectRoot ?? ROOT });

    this.webhooks = addWebhookEvents(
      this,
      { ledger, secrets, alarms },
      { ...(props.webhookUrl ? { webhookUrl: props.webhookUrl } : {}), logRetention, projectRoot: props.projectRoot ?? ROOT },
    );

    this.autoTopUp = addAutoTopUp(
      this,
      { ledger, secrets, alarms, streamConsumer: this.webhooks.functions.streamConsumer },
      {
        ...(props.prices ? { prices: props.prices } : {}),
        ...(props.authorizeRateLimitPerMinute !== undefined ? { authorizeRateLimitPerMinute: props.authorizeRateLimitPerMinute } : {}),
        ...(props.holdTtlSeconds !== undefined ? { holdTtlSeconds: props.holdTtlSeconds } : {}),
        ...(props.entries?.autoTopUp ? { entry: props.entries.autoTopUp } : {}),
        logRetention,
        projectRoot: props.projectRoot ?? ROOT,
      },
    );

    this.proxy = addChatProxy(
      this,
      { ledger, secrets, alarms },
      {
        appUrl: props.appUrl,
        ...(props.auth ? { auth: props.auth } : {}),
        ...(props.authorizeRateLimitPerMinute !== undefined ? { authorizeRateLimitPerMinute: props.authorizeRateLimitPerMinute } : {}),
        ...(props.holdTtlSeconds !== undefined ? { holdTtlSeconds: props.holdTtlSeconds } : {}),
        ...(props.upstreamBaseUrl !== undefined ? { upstreamBaseUrl: props.upstreamBaseUrl } : {}),
        ...(props.proxyMaxOutputTokens !== undefined ? { maxOutputTokens: props.proxyMaxOutputTokens } : {}),
        ...(props.entries?.chatProxy ? { entry: props.entries.chatProxy } : {}),
        logRetention,
        projectRoot: props.projectRoot ?? ROOT,
      },
    );

    const http = addHttpApi(this, this.functions, {
      appUrl: props.appUrl,
      throttle: props.apiThrottle ?? { rateLimit: 100, burstLimit: 200 },
      logRetention,
    });
    this.api = http.api;
    if (http.webhook) {
      alarms.webhookServerErrorRate(http.webhook);
      new CfnOutput(this, "WebhookUrl", {
        value: `${this.api.apiEndpoint}${http.webhook.resource}`,
        description: "Stripe webhook endpoint (Developers → Webhooks → Add endpoint)",
      });
    }

    const schedules = addSchedules(this, this.functions);
    this.sweepDlq = schedules.dlq;
    for (const { name, fn, schedule } of schedules.scheduled) alarms.notRunning(name, fn, schedule);
    alarms.sweep(schedules.dlq);
    alarms.billing();

    // cdk-nag: what stays flagged on purpose, and why (the API's and the DLQ's findings are
    // acknowledged where they are made).
    secrets.acknowledgeNoRotation();

    new CfnOutput(this, "ApiUrl", { value: this.api.apiEndpoint, description: "HTTP API base URL (routes start with /v1)" });
    new CfnOutput(this, "ProxyUrl", {
      value: this.proxy.url.url,
      description: "chat proxy Function URL (streaming, OpenAI-compatible): POST <ProxyUrl>v1/chat/completions, GET <ProxyUrl>v1/models",
    });
    new CfnOutput(this, "TableName", { value: this.table.tableName });
    new CfnOutput(this, "WebhookDlqUrl", { value: this.webhooks.dlq.queueUrl, description: "events given up on: npm run ops -- webhooks failed" });
    new CfnOutput(this, "WebhookQueueUrl", { value: this.webhooks.queue.queueUrl, description: "events waiting for delivery" });
    new CfnOutput(this, "TopUpQueueUrl", { value: this.autoTopUp.queue.queueUrl, description: "auto top-up jobs waiting to be charged" });
    new CfnOutput(this, "TopUpDlqUrl", {
      value: this.autoTopUp.dlq.queueUrl,
      description: "auto top-up jobs that failed 10 times: fix the cause, then redrive to TopUpQueue (safe: same Stripe idempotency keys)",
    });
    new CfnOutput(this, "AlarmTopicArn", { value: this.alarmTopic.topicArn, description: "subscribe to get alarms" });
    secrets.addOutputs();
  }
}
