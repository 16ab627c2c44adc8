import { Template } from "aws-cdk-lib/assertions";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EVENT_FUNCTIONS, type EventFunctionName } from "../../lib/routes.js";
import { WEBHOOK_MAX_RECEIVE_COUNT } from "../../infra/constructs/events.js";
import { logicalId, type Synthesized, synthStack } from "./synth.js";

// biome-ignore lint/suspicious/noExplicitAny: CloudFormation JSON
type Json = any;

/** The outgoing webhooks' part of the stack (infra/constructs/events.ts). */
let synth: Synthesized;
let resources: Record<string, Json>;

beforeAll(() => {
  synth = synthStack({ webhookUrl: "https://app.example.test/hooks/creditgate" });
  resources = Template.fromStack(synth.stack).toJSON().Resources;
}, 120_000);
afterAll(() => synth?.cleanup());

const ofType = (type: string) => Object.values(resources).filter((r) => r.Type === type) as Json[];
const idOf = (construct: { node: { defaultChild?: unknown } }) => logicalId(synth.stack, construct.node.defaultChild as never);
const fnId = (name: EventFunctionName) => idOf(synth.stack.webhooks.functions[name].fn);
const roleId = (name: EventFunctionName) => idOf(synth.stack.webhooks.functions[name].role);
const refsIn = (value: unknown) => [...JSON.stringify(value).matchAll(/"(?:Ref|Fn::GetAtt)":\s*\[?"([^"]+)"/g)].map((m) => m[1] as string).filter((id) => !id.startsWith("AWS::"));
function statements(name: EventFunctionName): { Action: string[]; Resource: Json }[] {
  return ofType("AWS::IAM::Policy")
    .filter((policy) => policy.Properties.Roles.some((r: Json) => r.Ref === roleId(name)))
    .flatMap((policy) => policy.Properties.PolicyDocument.Statement)
    .map((s: Json) => ({ ...s, Action: [s.Action].flat() }));
}

describe("webhook events in the stack", () => {
  it("streams the table with old and new images", () => {
    const table = resources[logicalId(synth.stack, synth.stack.table.node.defaultChild)];
    expect(table.Properties.StreamSpecification).toEqual({ StreamViewType: "NEW_AND_OLD_IMAGES" });
  });

  it("maps the stream to the consumer: batches, bisect on error, bounded retries, an on-failure destination", () => {
    const mapping = ofType("AWS::Lambda::EventSourceMapping").find((m) => refsIn(m.Properties.FunctionName).includes(fnId("streamConsumer")));
    expect(mapping.Properties).toMatchObject({
      BatchSize: 100,
      MaximumBatchingWindowInSeconds: 1,
      BisectBatchOnFunctionError: true,
      MaximumRetryAttempts: 10,
      ParallelizationFactor: 1,
      StartingPosition: "LATEST",
    });
    expect(refsIn(mapping.Properties.DestinationConfig.OnFailure.Destination)).toEqual([idOf(synth.stack.webhooks.streamFailures)]);
  });

  it("feeds the deliverer from the queue with partial batch failures; the queue dead-letters after its receive count", () => {
    const mapping = ofType("AWS::Lambda::EventSourceMapping").find((m) => refsIn(m.Properties.FunctionName).includes(fnId("webhookDeliverer")));
    expect(mapping.Properties).toMatchObject({ BatchSize: 10, FunctionResponseTypes: ["ReportBatchItemFailures"] });
    const queue = resources[idOf(synth.stack.webhooks.queue)].Properties;
    expect(queue.RedrivePolicy.maxReceiveCount).toBe(WEBHOOK_MAX_RECEIVE_COUNT);
    expect(refsIn(queue.RedrivePolicy.deadLetterTargetArn)).toEqual([idOf(synth.stack.webhooks.dlq)]);
    expect(queue.VisibilityTimeout).toBe(EVENT_FUNCTIONS.webhookDeliverer.timeoutSeconds * 6);
  });

  it("encrypts every webhook queue and refuses plain HTTP to it", () => {
    for (const queue of [synth.stack.webhooks.queue, synth.stack.webhooks.dlq, synth.stack.webhooks.streamFailures]) {
      const id = idOf(queue);
      expect(resources[id].Properties.SqsManagedSseEnabled).toBe(true);
      const policy = ofType("AWS::SQS::QueuePolicy").find((p) => refsIn(p.Properties.Queues).includes(id));
      expect(JSON.stringify(policy.Properties.PolicyDocument)).toContain("aws:SecureTransport");
    }
  });

  it("least privilege: no table item access; the consumer sends to the queue, the deliverer consumes it, dead-letters, reads its secret", () => {
    const consumer = statements("streamConsumer").flatMap((s) => s.Action);
    const deliverer = statements("webhookDeliverer").flatMap((s) => s.Action);
    for (const actions of [consumer, deliverer]) {
      expect(actions.filter((a) => /^dynamodb:(GetItem|PutItem|UpdateItem|DeleteItem|Query|Scan|BatchWriteItem)$/.test(a))).toEqual([]);
      expect(actions.some((a) => a.endsWith("*") && !a.startsWith("logs:"))).toBe(false);
    }
    expect(consumer).toEqual(expect.arrayContaining(["dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:DescribeStream", "sqs:SendMessage"]));
    expect(consumer.filter((a) => a.startsWith("secretsmanager:"))).toEqual([]);
    expect(deliverer).toEqual(expect.arrayContaining(["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:SendMessage", "secretsmanager:GetSecretValue"]));
    expect(deliverer.filter((a) => a.startsWith("dynamodb:"))).toEqual([]);
    // the deliverer sends only to the DLQ
    const send = statements("webhookDeliverer").filter((s) => s.Action.includes("sqs:SendMessage"));
    expect(send.flatMap((s) => refsIn(s.Resource))).toEqual([idOf(synth.stack.webhooks.dlq)]);
  });

  it("passes the endpoint to both functions and the secret only as an ARN to the deliverer", () => {
    const env = (name: EventFunctionName) => resources[fnId(name)].Properties.Environment.Variables;
    expect(env("streamConsumer").APP_WEBHOOK_URL).toBe("https://app.example.test/hooks/creditgate");
    expect(env("webhookDeliverer").APP_WEBHOOK_URL).toBe("https://app.example.test/hooks/creditgate");
    expect(env("webhookDeliverer").APP_WEBHOOK_SECRET_ARN).toBeDefined();
    expect(env("webhookDeliverer").APP_WEBHOOK_SECRET).toBeUndefined();
    expect(env("streamConsumer").APP_WEBHOOK_SECRET_ARN).toBeUndefined();
  });

  it("alarms on the DLQ's depth, failed stream batches and the consumer's iterator age", () => {
    const alarms = ofType("AWS::CloudWatch::Alarm").map((a) => a.Properties);
    const onQueue = (queue: { node: { defaultChild?: unknown } }) =>
      alarms.find((a) => a.MetricName === "ApproximateNumberOfMessagesVisible" && refsIn(a.Dimensions).includes(idOf(queue)));
    expect(onQueue(synth.stack.webhooks.dlq)).toBeDefined();
    expect(onQueue(synth.stack.webhooks.streamFailures)).toBeDefined();
    const age = alarms.find((a) => a.MetricName === "IteratorAge" && refsIn(a.Dimensions).includes(fnId("streamConsumer")));
    expect(age).toMatchObject({ Threshold: 300_000, Statistic: "Maximum" });
  });
});
