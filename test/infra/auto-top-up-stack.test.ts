import { App } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import { AwsSolutionsChecks } from "cdk-nag";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { STRIPE_PRICE_VARS } from "../../lib/config.js";
import { TOPUP_FUNCTION } from "../../lib/routes.js";
import { TOPUP_BATCH_SIZE, TOPUP_MAX_CONCURRENCY, TOPUP_MAX_RECEIVE_COUNT } from "../../infra/constructs/auto-top-up.js";
import { TABLE_ACTIONS } from "../../infra/constructs/functions.js";
import { stackPropsFromContext } from "../../infra/context.js";
import { CreditgateStack } from "../../infra/stack.js";
import { logicalId, stubMissingEntries, type Synthesized, synthStack } from "./synth.js";

// biome-ignore lint/suspicious/noExplicitAny: CloudFormation JSON
type Json = any;

/** Auto top-up's part of the stack (infra/constructs/auto-top-up.ts). */

/** A real-looking Stripe key in the synth process's environment: it may not reach the template. */
const SECRET_LOOKALIKES = { STRIPE_SECRET_KEY: "sk_live_mustNeverReachTheTemplate0003", STRIPE_API_BASE: "http://127.0.0.1:12111" };
const PRICES = {
  STRIPE_PRICE_PRO_MONTHLY: "price_proMonthly003",
  STRIPE_PRICE_PACK_STARTER: "price_packStarter003",
  STRIPE_PRICE_PACK_PRO: "price_packPro003",
  STRIPE_PRICE_PACK_ENTERPRISE: "price_packEnterprise003",
};
const CONTEXT: Record<string, string> = { appUrl: "https://app.example.test/dashboard" };

let synth: Synthesized;
let template: Template;
let resources: Record<string, Json>;

beforeAll(() => {
  // Props built as infra/app.ts builds them: from context, with the key and prices in the environment.
  const { props } = stackPropsFromContext((key) => CONTEXT[key], { ...SECRET_LOOKALIKES, ...PRICES });
  synth = synthStack(props);
  template = Template.fromStack(synth.stack);
  resources = template.toJSON().Resources;
}, 120_000);
afterAll(() => synth?.cleanup());

const ofType = (type: string) => Object.values(resources).filter((r) => r.Type === type) as Json[];
const asArray = <T>(value: T | T[]): T[] => (Array.isArray(value) ? value : [value]);
const idOf = (construct: { node: { defaultChild?: unknown } }) => logicalId(synth.stack, construct.node.defaultChild as never);
/** Logical ids a value refers to (Ref / Fn::GetAtt), pseudo parameters (AWS::…) left out. */
const refsIn = (value: unknown) =>
  [...JSON.stringify(value).matchAll(/"(?:Ref|Fn::GetAtt)":\s*\[?"([^"]+)"/g)].map((m) => m[1] as string).filter((id) => !id.startsWith("AWS::"));

const topUp = () => synth.stack.autoTopUp;
const queueId = () => idOf(topUp().queue);
const dlqId = () => idOf(topUp().dlq);
const fnId = () => idOf(topUp().function.fn);
const fnProps = () => resources[fnId()].Properties;
const tableId = () => idOf(synth.stack.table);
const stripeSecretId = () => idOf(synth.stack.secrets.get("STRIPE_SECRET_KEY") as Json);
const consumer = () => synth.stack.webhooks.functions.streamConsumer;

type Statement = { Action: string[]; Resource: Json[]; Effect: string; Sid?: string };
function statementsOf(roleLogicalId: string): Statement[] {
  return ofType("AWS::IAM::Policy")
    .filter((policy) => policy.Properties.Roles.some((r: Json) => r.Ref === roleLogicalId))
    .flatMap((policy) => policy.Properties.PolicyDocument.Statement)
    .map((s: Json) => ({ ...s, Action: asArray(s.Action), Resource: asArray(s.Resource) }));
}

describe("TopUpQueue and TopUpDlq", () => {
  it("redrives to the DLQ after 10 receives; visibility six times the function's timeout; the DLQ keeps 14 days", () => {
    const queue = resources[queueId()];
    expect(queue.Type).toBe("AWS::SQS::Queue");
    expect(TOPUP_MAX_RECEIVE_COUNT).toBe(10);
    expect(queue.Properties.RedrivePolicy).toEqual({ deadLetterTargetArn: { "Fn::GetAtt": [dlqId(), "Arn"] }, maxReceiveCount: 10 });
    expect(queue.Properties.VisibilityTimeout).toBe(TOPUP_FUNCTION.timeoutSeconds * 6);
    expect(queue.Properties.VisibilityTimeout).toBe(720);
    const dlq = resources[dlqId()];
    expect(dlq.Type).toBe("AWS::SQS::Queue");
    expect(dlq.Properties.MessageRetentionPeriod).toBe(14 * 86_400);
    expect(dlq.Properties.RedrivePolicy).toBeUndefined();
  });

  it("both are encrypted (SQS-managed keys) and refuse plain HTTP", () => {
    for (const id of [queueId(), dlqId()]) {
      expect(resources[id].Properties.SqsManagedSseEnabled).toBe(true);
      const policy = ofType("AWS::SQS::QueuePolicy").find((p) => refsIn(p.Properties.Queues).includes(id));
      expect(policy?.Properties.PolicyDocument.Statement).toEqual(
        expect.arrayContaining([expect.objectContaining({ Effect: "Deny", Condition: { Bool: { "aws:SecureTransport": "false" } } })]),
      );
    }
  });
});

describe("the autoTopUp function", () => {
  it("is fed by TopUpQueue only: batches of 10, partial batch responses, at most 2 concurrent invocations", () => {
    const mappings = ofType("AWS::Lambda::EventSourceMapping").filter((m) => refsIn(m.Properties.FunctionName).includes(fnId()));
    expect(mappings).toHaveLength(1);
    expect(mappings[0].Properties).toMatchObject({
      EventSourceArn: { "Fn::GetAtt": [queueId(), "Arn"] },
      BatchSize: TOPUP_BATCH_SIZE,
      FunctionResponseTypes: ["ReportBatchItemFailures"],
      ScalingConfig: { MaximumConcurrency: TOPUP_MAX_CONCURRENCY },
    });
    expect([TOPUP_BATCH_SIZE, TOPUP_MAX_CONCURRENCY]).toEqual([10, 2]);
    // nothing else consumes the queue
    const onQueue = ofType("AWS::Lambda::EventSourceMapping").filter((m) => refsIn(m.Properties.EventSourceArn).includes(queueId()));
    expect(onQueue).toHaveLength(1);
  });

  it("is nodejs24.x on arm64 with TOPUP_FUNCTION's memory and timeout, logging to its own group", () => {
    const p = fnProps();
    expect(p).toMatchObject({
      Runtime: "nodejs24.x",
      Architectures: ["arm64"],
      Handler: "index.handler",
      MemorySize: TOPUP_FUNCTION.memoryMb,
      Timeout: TOPUP_FUNCTION.timeoutSeconds,
    });
    expect([p.MemorySize, p.Timeout]).toEqual([512, 120]);
    expect(refsIn(p.LoggingConfig.LogGroup)).toEqual([idOf(topUp().function.logGroup)]);
    expect(resources[idOf(topUp().function.logGroup)].Properties.RetentionInDays).toBe(30);
  });

  it("gets the table, the Stripe key's ARN, every configured price id and the Powertools settings; no secret value, no Stripe API base", () => {
    const env = fnProps().Environment.Variables;
    expect(Object.keys(env).sort()).toEqual(
      [
        "NODE_OPTIONS",
        "TABLE_NAME",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
        "AUTHORIZE_RATE_LIMIT_PER_MINUTE",
        "HOLD_TTL_SECONDS",
        "STRIPE_SECRET_KEY_ARN",
        ...Object.keys(PRICES),
      ].sort(),
    );
    expect(env).toMatchObject({ ...PRICES, POWERTOOLS_SERVICE_NAME: "creditgate", POWERTOOLS_METRICS_NAMESPACE: "creditgate" });
    expect(env.TABLE_NAME).toEqual({ Ref: tableId() });
    expect(env.STRIPE_SECRET_KEY_ARN).toEqual({ Ref: stripeSecretId() });
    expect(resources[stripeSecretId()].Type).toBe("AWS::SecretsManager::Secret");
    // the same price share as the webhook
    const webhookEnv = resources[idOf(synth.stack.functions.webhook.fn)].Properties.Environment.Variables;
    const prices = (e: Record<string, unknown>) => Object.fromEntries(Object.entries(e).filter(([key]) => (STRIPE_PRICE_VARS as readonly string[]).includes(key)));
    expect(prices(env)).toEqual(prices(webhookEnv));
    const text = JSON.stringify(template.toJSON());
    expect(text).not.toContain(SECRET_LOOKALIKES.STRIPE_SECRET_KEY);
    expect(text).not.toContain(SECRET_LOOKALIKES.STRIPE_API_BASE);
  });

  it("its role: its log group, the readWrite item actions on the table only, GetSecretValue on the Stripe key only, consuming TopUpQueue; nothing else", () => {
    const role = resources[idOf(topUp().function.role)];
    expect(role.Properties.ManagedPolicyArns).toBeUndefined();
    expect(role.Properties.Policies).toBeUndefined();
    const logGroupId = idOf(topUp().function.logGroup);
    const statements = statementsOf(idOf(topUp().function.role)).map((s) => ({
      Effect: s.Effect,
      Action: [...s.Action].sort(),
      Resource: s.Resource,
    }));
    expect(statements).toHaveLength(4);
    expect(statements).toEqual(
      expect.arrayContaining([
        {
          Effect: "Allow",
          Action: ["logs:CreateLogStream", "logs:PutLogEvents"],
          Resource: [
            { "Fn::Join": ["", ["arn:", { Ref: "AWS::Partition" }, ":logs:us-east-1:123456789012:log-group:", { Ref: logGroupId }]] },
            { "Fn::GetAtt": [logGroupId, "Arn"] },
          ],
        },
        {
          Effect: "Allow",
          Action: [...TABLE_ACTIONS.readWrite].sort(),
          Resource: [{ "Fn::GetAtt": [tableId(), "Arn"] }],
        },
        { Effect: "Allow", Action: ["secretsmanager:GetSecretValue"], Resource: [{ Ref: stripeSecretId() }] },
        {
          Effect: "Allow",
          Action: ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
          Resource: [{ "Fn::GetAtt": [queueId(), "Arn"] }],
        },
      ]),
    );
    const actions = statements.flatMap((s) => s.Action);
    expect(actions.filter((a) => /^dynamodb:(Scan|DeleteItem|BatchWriteItem|\*)$/.test(a))).toEqual([]);
    expect(actions.filter((a) => a.includes("*"))).toEqual([]);
    expect(actions).not.toContain("sqs:SendMessage");
    expect(JSON.stringify(statements.map((s) => s.Resource))).not.toMatch(/"\*"|\/index\//);
  });

  it("has an Errors and a Throttles alarm", () => {
    for (const metric of ["Errors", "Throttles"]) {
      const found = ofType("AWS::CloudWatch::Alarm")
        .map((a) => a.Properties)
        .filter((a) => a.Namespace === "AWS/Lambda" && a.MetricName === metric && refsIn(a.Dimensions).includes(fnId()));
      expect(found, metric).toHaveLength(1);
      expect(found[0]).toMatchObject({ Threshold: 1, AlarmActions: [{ Ref: idOf(synth.stack.alarmTopic) }] });
    }
  });
});

describe("the stream consumer", () => {
  it("gets TOPUP_QUEUE_URL and may send to TopUpQueue, besides the webhook queue and its failure queue, nothing more", () => {
    const env = resources[idOf(consumer().fn)].Properties.Environment.Variables;
    expect(env.TOPUP_QUEUE_URL).toEqual({ Ref: queueId() });
    // its other settings unchanged
    expect(env.WEBHOOK_QUEUE_URL).toEqual({ Ref: idOf(synth.stack.webhooks.queue) });
    const sqsStatements = statementsOf(idOf(consumer().role)).filter((s) => s.Action.some((a) => a.startsWith("sqs:")));
    const onTopUps = sqsStatements.filter((s) => refsIn(s.Resource).includes(queueId()));
    expect(onTopUps).toHaveLength(1);
    expect(onTopUps[0]?.Action.sort()).toEqual(["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"]);
    expect(onTopUps[0]?.Resource).toEqual([{ "Fn::GetAtt": [queueId(), "Arn"] }]);
    // it consumes no queue and never touches the DLQ
    expect(sqsStatements.flatMap((s) => s.Action).filter((a) => !["sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"].includes(a))).toEqual([]);
    expect(sqsStatements.flatMap((s) => refsIn(s.Resource)).sort()).toEqual(
      [idOf(synth.stack.webhooks.queue), idOf(synth.stack.webhooks.streamFailures), queueId()].sort(),
    );
  });
});

describe("alarms and outputs", () => {
  it("alarms on any visible message in TopUpDlq, to the alarm topic", () => {
    const found = ofType("AWS::CloudWatch::Alarm")
      .map((a) => a.Properties)
      .filter((a) => a.MetricName === "ApproximateNumberOfMessagesVisible" && refsIn(a.Dimensions).includes(dlqId()));
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({
      Namespace: "AWS/SQS",
      Dimensions: [{ Name: "QueueName", Value: { "Fn::GetAtt": [dlqId(), "QueueName"] } }],
      Statistic: "Maximum",
      Threshold: 1,
      EvaluationPeriods: 1,
      ComparisonOperator: "GreaterThanOrEqualToThreshold",
      TreatMissingData: "notBreaching",
      AlarmActions: [{ Ref: idOf(synth.stack.alarmTopic) }],
    });
  });

  it("outputs TopUpQueueUrl and TopUpDlqUrl", () => {
    const outputs = template.toJSON().Outputs;
    expect(outputs.TopUpQueueUrl.Value).toEqual({ Ref: queueId() });
    expect(outputs.TopUpDlqUrl.Value).toEqual({ Ref: dlqId() });
  });

  it("cdk-nag finds nothing unacknowledged on auto top-up's resources", () => {
    const report = new AwsSolutionsChecks(undefined, { verbose: true }).validateScope(synth.stack);
    const paths = [topUp().queue, topUp().dlq, topUp().function].map((c) => c.node.path);
    const findings = report.violations.flatMap((v) => v.violatingResources.map((r) => `${v.ruleName}: ${r.constructPath}`));
    expect(findings.filter((f) => paths.some((path) => f.includes(path)))).toEqual([]);
  });
});

describe("with the Stripe key imported by name", () => {
  it("passes the name and grants GetSecretValue on that name's ARNs only", () => {
    // bundling skipped: only the template matters here
    const stubs = stubMissingEntries();
    try {
      const app = new App({ context: { "aws:cdk:bundling-stacks": [] } });
      const stack = new CreditgateStack(app, "ImportedKey", {
        env: { account: "123456789012", region: "us-east-1" },
        appUrl: "https://app.example.test",
        secretNames: { STRIPE_SECRET_KEY: "prod/creditgate/stripe-secret-key" },
        entries: stubs.entries,
      });
      const imported = Template.fromStack(stack).toJSON().Resources;
      const fn = imported[logicalId(stack, stack.autoTopUp.function.fn.node.defaultChild as never)].Properties;
      expect(fn.Environment.Variables.STRIPE_SECRET_KEY_ARN).toBe("prod/creditgate/stripe-secret-key");
      const role = logicalId(stack, stack.autoTopUp.function.role.node.defaultChild as never);
      const granted = Object.values(imported as Record<string, Json>)
        .filter((r) => r.Type === "AWS::IAM::Policy" && r.Properties.Roles.some((ref: Json) => ref.Ref === role))
        .flatMap((p) => p.Properties.PolicyDocument.Statement)
        .filter((s: Json) => JSON.stringify(s.Action).includes("secretsmanager:"));
      expect(granted).toHaveLength(1);
      expect(JSON.stringify(granted[0].Resource)).toContain(":secret:prod/creditgate/stripe-secret-key-??????");
      expect(JSON.stringify(granted[0].Resource)).not.toContain('"*"');
    } finally {
      stubs.cleanup();
    }
  });
});
