import { join } from "node:path";
import { Duration } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import * as lambda from "aws-cdk-lib/aws-lambda";
import { DynamoEventSource, SqsDlq, SqsEventSource } from "aws-cdk-lib/aws-lambda-event-sources";
import type * as logs from "aws-cdk-lib/aws-logs";
import * as sqs from "aws-cdk-lib/aws-sqs";
import type { Construct } from "constructs";
import { loadConfig } from "../../lib/config.js";
import { EVENT_FUNCTIONS, type EventFunctionName } from "../../lib/routes.js";
import { HouseFunction } from "../house-function.js";
import type { Alarms } from "./alarms.js";
import { acknowledge, METRICS_NAMESPACE, SERVICE_NAME } from "./common.js";
import type { StackSecrets } from "./secrets.js";
import type { LedgerTable } from "./table.js";

/** How often the deliverer may see one message before SQS itself dead-letters it (crashes, not failed posts: those the deliverer dead-letters after its window). */
export const WEBHOOK_MAX_RECEIVE_COUNT = 60;

export interface WebhookEventsConfig {
  /** the app's endpoint (https); unset: the consumer queues nothing and nothing is sent */
  webhookUrl?: string;
  logRetention: logs.RetentionDays;
  projectRoot: string;
  entries?: Partial<Record<EventFunctionName, string>>;
}

export interface WebhookEvents {
  functions: Record<EventFunctionName, HouseFunction>;
  /** events waiting for delivery ("WebhookQueue") */
  queue: sqs.Queue;
  /** events given up on after the retry window ("WebhookDlq"); `ops webhooks failed|redrive` */
  dlq: sqs.Queue;
  /** where the stream consumer's event source mapping sends a batch it could not process ("WebhookStreamFailures") */
  streamFailures: sqs.Queue;
}

const encryptedQueue = (scope: Construct, id: string, props: sqs.QueueProps) =>
  new sqs.Queue(scope, id, { encryption: sqs.QueueEncryption.SQS_MANAGED, enforceSSL: true, ...props });

/**
 * Outgoing webhooks (lib/events, docs/webhooks.md): the table's stream → the stream consumer
 * (batches, bisected on error, a batch that keeps failing recorded in WebhookStreamFailures) →
 * WebhookQueue → the deliverer (SQS event source, partial batch failures, its own backoff) → the
 * app; what fails for 3 days lands in WebhookDlq. Neither function may touch a table item.
 */
export function addWebhookEvents(
  scope: Construct,
  { ledger: { table }, secrets, alarms }: { ledger: LedgerTable; secrets: StackSecrets; alarms: Alarms },
  config: WebhookEventsConfig,
): WebhookEvents {
  const dlq = encryptedQueue(scope, "WebhookDlq", { retentionPeriod: Duration.days(14) });
  acknowledge(dlq, { id: "AwsSolutions-SQS3", reason: "This queue is itself the dead-letter queue of the webhook delivery queue (WebhookQueue)." });
  const streamFailures = encryptedQueue(scope, "WebhookStreamFailures", { retentionPeriod: Duration.days(14) });
  acknowledge(streamFailures, {
    id: "AwsSolutions-SQS3",
    reason: "This queue is the on-failure destination of the stream consumer's event source mapping: it holds stream positions of failed batches, a dead-letter queue itself.",
  });
  const delivererTimeout = Duration.seconds(EVENT_FUNCTIONS.webhookDeliverer.timeoutSeconds);
  const queue = encryptedQueue(scope, "WebhookQueue", {
    // AWS's advice for a Lambda SQS source: six times the function's timeout
    visibilityTimeout: Duration.seconds(delivererTimeout.toSeconds() * 6),
    // the 3-day retry window and a day to spare
    retentionPeriod: Duration.days(4),
    deadLetterQueue: { queue: dlq, maxReceiveCount: WEBHOOK_MAX_RECEIVE_COUNT },
  });

  const common = {
    TABLE_NAME: table.tableName,
    POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
    POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
    POWERTOOLS_LOG_LEVEL: "INFO",
    ...(config.webhookUrl ? { APP_WEBHOOK_URL: config.webhookUrl } : {}),
  };
  // the values the functions validate at cold start, checked at synth (a dummy secret and queue URLs)
  loadConfig({ ...common, TABLE_NAME: "synth-check", WEBHOOK_QUEUE_URL: "https://sqs.example/q", WEBHOOK_DLQ_URL: "https://sqs.example/d", APP_WEBHOOK_SECRET: `whsec_${"A".repeat(32)}` }, "deliver");

  const environments: Record<EventFunctionName, Record<string, string>> = {
    streamConsumer: { ...common, WEBHOOK_QUEUE_URL: queue.queueUrl },
    webhookDeliverer: {
      ...common,
      WEBHOOK_QUEUE_URL: queue.queueUrl,
      WEBHOOK_DLQ_URL: dlq.queueUrl,
      ...Object.fromEntries(EVENT_FUNCTIONS.webhookDeliverer.secrets.map((secret) => [`${secret}_ARN`, secrets.secretId(secret)])),
    },
  };
  const functions = {} as Record<EventFunctionName, HouseFunction>;
  for (const [name, spec] of Object.entries(EVENT_FUNCTIONS) as [EventFunctionName, (typeof EVENT_FUNCTIONS)[EventFunctionName]][]) {
    functions[name] = new HouseFunction(scope, name, {
      entry: config.entries?.[name] ?? join(config.projectRoot, spec.entry),
      description: `creditgate ${name}: ${spec.trigger === "stream" ? "table stream to the webhook queue" : "webhook queue to the app endpoint"}`,
      timeout: Duration.seconds(spec.timeoutSeconds),
      memorySize: spec.memoryMb,
      environment: environments[name],
      logRetention: config.logRetention,
      projectRoot: config.projectRoot,
      depsLockFilePath: join(config.projectRoot, "package-lock.json"),
    });
    alarms.functionAlarms(name, functions[name]);
  }

  const consumer = functions.streamConsumer;
  consumer.fn.addEventSource(
    new DynamoEventSource(table, {
      startingPosition: lambda.StartingPosition.LATEST,
      batchSize: 100,
      maxBatchingWindow: Duration.seconds(1),
      // a failing batch is halved until the record that fails stands alone; the rest goes on
      bisectBatchOnError: true,
      retryAttempts: 10,
      // the stream keeps 24 hours; a record older than that is reported, not retried forever
      maxRecordAge: Duration.hours(12),
      onFailure: new SqsDlq(streamFailures),
      // one batch per shard at a time: an account's changes are consumed in order
      parallelizationFactor: 1,
    }),
  );
  queue.grantSendMessages(consumer.role);
  // The event source grants the stream's reads on the stream's ARN, and dynamodb:ListStreams on
  // "*": that action has no resource-level permission, and Lambda checks for it.
  acknowledge(consumer.role, {
    id: "AwsSolutions-IAM5[Resource::*]",
    reason: "dynamodb:ListStreams supports no resource-level permissions (it lists stream ARNs, no data); every stream read is granted on this table's stream ARN only.",
  });

  const deliverer = functions.webhookDeliverer;
  deliverer.fn.addEventSource(new SqsEventSource(queue, { batchSize: 10, reportBatchItemFailures: true, maxConcurrency: 5 }));
  // its own backoff: ChangeMessageVisibility (granted with the event source's consume rights), and giving up into the DLQ
  dlq.grantSendMessages(deliverer.role);
  deliverer.role.addToPolicy(
    new iam.PolicyStatement({
      sid: "ReadOwnSecrets",
      actions: ["secretsmanager:GetSecretValue"],
      resources: EVENT_FUNCTIONS.webhookDeliverer.secrets.map((secret) => secrets.arnForPolicy(secret)),
    }),
  );

  alarms.webhooks({ dlq, streamFailures, iteratorAge: consumer.fn.metric("IteratorAge", { statistic: "Maximum", period: Duration.minutes(5) }) });
  return { functions, queue, dlq, streamFailures };
}

