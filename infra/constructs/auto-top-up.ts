import { join } from "node:path";
import { Duration } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import { SqsEventSource } from "aws-cdk-lib/aws-lambda-event-sources";
import type * as logs from "aws-cdk-lib/aws-logs";
import * as sqs from "aws-cdk-lib/aws-sqs";
import type { Construct } from "constructs";
import { loadConfig, type StripePriceVar } from "../../lib/config.js";
import { TOPUP_FUNCTION } from "../../lib/routes.js";
import { HouseFunction } from "../house-function.js";
import type { Alarms } from "./alarms.js";
import { TOPUP_NAME } from "./common.js";
import { baseEnvironment, grantTable, ledgerEnvOf, priceEnvOf } from "./functions.js";
import type { StackSecrets } from "./secrets.js";
import type { LedgerTable } from "./table.js";

/**
 * How often the function may see one job before SQS dead-letters it (as the local stand-in,
 * infra/local/sqs-local.ts "creditgate-topups"). A retried job resumes the same top-up under the
 * same Stripe idempotency keys, so each receive is safe; ten of them (12 minutes apart, the
 * visibility timeout) span about two hours of Stripe or DynamoDB trouble.
 */
export const TOPUP_MAX_RECEIVE_COUNT = 10;
/** The event source's batch: the function runs a batch's jobs one after another (lib/topup/consume.ts). */
export const TOPUP_BATCH_SIZE = 10;
/**
 * At most this many concurrent invocations on the queue: 2 is the lowest value SQS event sources
 * accept. Jobs of one user run one after another within a batch, but a standard queue may hand
 * two of them to two invocations; keeping concurrency at the floor keeps such races rare (the
 * top-up item's version check and Stripe's idempotency keys make them harmless) and keeps a burst
 * of threshold crossings from becoming a burst of Stripe calls or from taking the account's
 * Lambda concurrency from the API.
 */
export const TOPUP_MAX_CONCURRENCY = 2;

/** The configuration of auto top-up (CreditgateStackProps' share of it). */
export interface AutoTopUpConfig {
  /** the same price ids the webhook gets: a top-up charges a pack's price */
  prices?: Partial<Record<StripePriceVar, string>>;
  authorizeRateLimitPerMinute?: number;
  holdTtlSeconds?: number;
  logRetention: logs.RetentionDays;
  /** Tests only: a handler file replacing TOPUP_FUNCTION.entry (it must lie under projectRoot). */
  entry?: string;
  /** where package-lock.json lives */
  projectRoot: string;
}

export interface AutoTopUp {
  function: HouseFunction;
  /** threshold crossings waiting to be charged ("TopUpQueue"); output "TopUpQueueUrl" */
  queue: sqs.Queue;
  /** jobs that failed on every receive ("TopUpDlq"); output "TopUpDlqUrl", alarmed */
  dlq: sqs.Queue;
}

const encryptedQueue = (scope: Construct, id: string, props: sqs.QueueProps) =>
  new sqs.Queue(scope, id, { encryption: sqs.QueueEncryption.SQS_MANAGED, enforceSSL: true, ...props });

/**
 * Auto top-up (lib/topup, lib/routes.ts TOPUP_FUNCTION, id "autoTopUp"): the stream consumer
 * (infra/constructs/events.ts) sends each threshold crossing to TopUpQueue; the function takes
 * batches off it (SQS event source, partial batch responses), charges the user's saved card
 * through Stripe and writes the top-up's state; a job that keeps failing lands in TopUpDlq, which
 * alarms. The function's own role holds the table's readWrite item actions on the table only (it
 * queries no index), GetSecretValue on the Stripe key, the queue's consume rights (granted by the
 * event source) and its log group. The stream consumer gets TOPUP_QUEUE_URL and SendMessage on
 * TopUpQueue only.
 */
export function addAutoTopUp(
  scope: Construct,
  { ledger: { table }, secrets, alarms, streamConsumer }: { ledger: LedgerTable; secrets: StackSecrets; alarms: Alarms; streamConsumer: HouseFunction },
  config: AutoTopUpConfig,
): AutoTopUp {
  const spec = TOPUP_FUNCTION;
  const dlq = encryptedQueue(scope, "TopUpDlq", { retentionPeriod: Duration.days(14) });
  // No cdk-nag acknowledgment: AwsSolutions-SQS3 sees TopUpQueue's redrive policy name this queue.
  const queue = encryptedQueue(scope, "TopUpQueue", {
    // AWS's advice for a Lambda SQS source: six times the function's timeout (a job handed back
    // as a batch item failure is tried again when this runs out)
    visibilityTimeout: Duration.seconds(spec.timeoutSeconds * 6),
    deadLetterQueue: { queue: dlq, maxReceiveCount: TOPUP_MAX_RECEIVE_COUNT },
  });

  const ledgerEnv = ledgerEnvOf(config);
  const priceEnv = priceEnvOf(config);
  // Validated as the function validates its environment at cold start (profile "topup"), the
  // secret as a dummy, so a value it would refuse fails the synth, naming it.
  loadConfig({ TABLE_NAME: "synth-check", STRIPE_SECRET_KEY: "sk_test_synthcheck", ...ledgerEnv, ...priceEnv }, "topup");

  const environment: Record<string, string> = {
    ...baseEnvironment(table.tableName),
    // the ledger's settings, as every other writer of the ledger gets them
    ...ledgerEnv,
    ...priceEnv,
    // ARNs (or imported names), never values: lib/secrets.ts reads them at cold start.
    ...Object.fromEntries(spec.secrets.map((secret) => [`${secret}_ARN`, secrets.secretId(secret)])),
  };
  const fn = new HouseFunction(scope, TOPUP_NAME, {
    entry: config.entry ?? join(config.projectRoot, spec.entry),
    description: `creditgate ${TOPUP_NAME}: top-up queue to Stripe (charges saved cards)`,
    timeout: Duration.seconds(spec.timeoutSeconds),
    memorySize: spec.memoryMb,
    environment,
    logRetention: config.logRetention,
    projectRoot: config.projectRoot,
    depsLockFilePath: join(config.projectRoot, "package-lock.json"),
  });

  // Its items (GetItem; Put and Update, also inside transactions) and the account it reads: the
  // readWrite level's item actions on the table itself, no index.
  grantTable(fn, spec.table, { table, indexArns: [] }, { queries: false });
  fn.role.addToPolicy(
    new iam.PolicyStatement({
      sid: "ReadOwnSecrets",
      actions: ["secretsmanager:GetSecretValue"],
      resources: spec.secrets.map((secret) => secrets.arnForPolicy(secret)),
    }),
  );
  // Grants ReceiveMessage, DeleteMessage, ChangeMessageVisibility, GetQueueAttributes, GetQueueUrl on TopUpQueue.
  fn.fn.addEventSource(
    new SqsEventSource(queue, { batchSize: TOPUP_BATCH_SIZE, reportBatchItemFailures: true, maxConcurrency: TOPUP_MAX_CONCURRENCY }),
  );

  // The stream consumer (lib/events/runtime.ts buildStreamConsumer) sends crossings here with SendMessageBatch.
  streamConsumer.fn.addEnvironment("TOPUP_QUEUE_URL", queue.queueUrl);
  queue.grantSendMessages(streamConsumer.role);

  alarms.functionAlarms(TOPUP_NAME, fn);
  alarms.topUps(dlq);
  return { function: fn, queue, dlq };
}
