import { Validations } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import { AwsSolutionsChecks } from "cdk-nag";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tableDefinition } from "../../lib/ledger/table-definition.js";
import { EVENT_FUNCTIONS, FUNCTIONS, type FunctionName, routeTable } from "../../lib/routes.js";
import { SECRET_PLACEHOLDER_KEY } from "../../lib/secrets.js";
import { stackPropsFromContext } from "../../infra/context.js";
import { METRICS_NAMESPACE, SERVICE_NAME } from "../../infra/stack.js";
import { BILLING_METRICS } from "../../lib/billing/metrics.js";
import { FUNCTION_NAMES, logicalId, type Synthesized, synthStack } from "./synth.js";

// biome-ignore lint/suspicious/noExplicitAny: CloudFormation JSON
type Json = any;

/** Real-looking secrets in the synth process's environment: none may reach the template. */
const SECRET_LOOKALIKES = {
  AUTH_JWT_SECRET: "jwt-secret-that-must-never-reach-the-template-0001",
  STRIPE_SECRET_KEY: "sk_test_mustNeverReachTheTemplate0001",
  STRIPE_WEBHOOK_SECRET: "whsec_mustNeverReachTheTemplate0001",
};
const PRICES = { STRIPE_PRICE_PRO_MONTHLY: "price_proMonthly001", STRIPE_PRICE_PACK_STARTER: "price_packStarter001" };
const CONTEXT: Record<string, string> = {
  appUrl: "https://app.example.test/dashboard",
  authIssuer: "https://issuer.example.test",
  authAudience: "creditgate-api",
  authServiceAudience: "creditgate-gate",
  apiRateLimit: "50",
  apiBurstLimit: "80",
};
/** the functions that map Stripe prices: checkouts, the portal, the webhook, and the sweep's parked-event retries */
const BILLING: FunctionName[] = ["subscribe", "portal", "webhook", "monthlyGrantSweep"];
const WRITE_ACTIONS = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"];

let synth: Synthesized;
let template: Template;
let resources: Record<string, Json>;

beforeAll(() => {
  // Props built as infra/app.ts builds them: from context, with secrets and prices in the environment.
  const { props } = stackPropsFromContext((key) => CONTEXT[key], { ...SECRET_LOOKALIKES, ...PRICES });
  synth = synthStack(props);
  template = Template.fromStack(synth.stack);
  resources = template.toJSON().Resources;
}, 120_000);

afterAll(() => synth?.cleanup());

const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type) as [string, Json][];
/** The one resource of a type (fails if there are none or several). */
function only(type: string): Json {
  const found = ofType(type);
  expect(found, type).toHaveLength(1);
  return (found[0] as [string, Json])[1];
}
const fnId = (name: FunctionName) => logicalId(synth.stack, synth.stack.functions[name].fn.node.defaultChild);
const roleId = (name: FunctionName) => logicalId(synth.stack, synth.stack.functions[name].role.node.defaultChild);
const fnProps = (name: FunctionName) => resources[fnId(name)].Properties;
const asArray = <T>(value: T | T[]): T[] => (Array.isArray(value) ? value : [value]);
/** Logical ids a value refers to (Ref / Fn::GetAtt), pseudo parameters (AWS::…) left out. */
const refsIn = (value: unknown) =>
  [...JSON.stringify(value).matchAll(/"(?:Ref|Fn::GetAtt)":\s*\[?"([^"]+)"/g)]
    .map((m) => m[1] as string)
    .filter((id) => !id.startsWith("AWS::"));

/** Every statement of every identity policy attached to a function's role. */
function roleStatements(name: FunctionName): { Action: string[]; Resource: Json[]; Effect: string }[] {
  const role = roleId(name);
  return ofType("AWS::IAM::Policy")
    .filter(([, policy]) => policy.Properties.Roles.some((r: Json) => r.Ref === role))
    .flatMap(([, policy]) => policy.Properties.PolicyDocument.Statement)
    .map((s: Json) => ({ ...s, Action: asArray(s.Action), Resource: asArray(s.Resource) }));
}
const actionsOf = (name: FunctionName, service: string) =>
  roleStatements(name).flatMap((s) => s.Action.filter((a) => a.startsWith(`${service}:`)));

describe("HTTP API", () => {
  it("has exactly the routes of lib/routes.ts, each integrated with the function that serves it", () => {
    const routes = ofType("AWS::ApiGatewayV2::Route").map(([, r]) => r.Properties);
    const expected = routeTable();
    expect(routes.map((r) => r.RouteKey).sort()).toEqual([...expected.keys()].sort());
    for (const route of routes) {
      const [integrationId] = refsIn(route.Target);
      const integration = resources[integrationId as string].Properties;
      expect(integration.IntegrationType).toBe("AWS_PROXY");
      expect(integration.PayloadFormatVersion).toBe("2.0");
      expect(refsIn(integration.IntegrationUri)).toEqual([fnId(expected.get(route.RouteKey) as FunctionName)]);
    }
  });

  it("puts no authorizer on any route: the functions verify JWTs, the webhook its Stripe signature", () => {
    // Documented choice (infra/constructs/http-api.ts): an authorizer on the webhook would break Stripe's delivery.
    const routes = ofType("AWS::ApiGatewayV2::Route").map(([, r]) => r.Properties);
    expect(routes.find((r) => r.RouteKey === "POST /v1/stripe/webhook")).toBeDefined();
    for (const route of routes) {
      expect(route.AuthorizerId).toBeUndefined();
      expect(route.AuthorizationType ?? "NONE").toBe("NONE");
    }
    expect(ofType("AWS::ApiGatewayV2::Authorizer")).toHaveLength(0);
  });

  it("throttles the default stage, logs access and keeps route metrics", () => {
    const stages = ofType("AWS::ApiGatewayV2::Stage").map(([, s]) => s.Properties);
    expect(stages).toHaveLength(1);
    const [stage] = stages;
    expect(stage).toMatchObject({
      StageName: "$default",
      AutoDeploy: true,
      DefaultRouteSettings: { ThrottlingRateLimit: 50, ThrottlingBurstLimit: 80, DetailedMetricsEnabled: true },
    });
    const format = JSON.parse(stage.AccessLogSettings.Format);
    expect(format).toMatchObject({ requestId: "$context.requestId", routeKey: "$context.routeKey", status: "$context.status" });
    const [logGroupId] = refsIn(stage.AccessLogSettings.DestinationArn);
    expect(resources[logGroupId as string].Properties.RetentionInDays).toBe(30);
  });

  it("allows CORS from the app's origin only", () => {
    const api = only("AWS::ApiGatewayV2::Api");
    expect(api.Properties.CorsConfiguration.AllowOrigins).toEqual(["https://app.example.test"]);
  });

  it("outputs the API URL, the Stripe webhook URL and the table name", () => {
    const outputs = template.toJSON().Outputs;
    expect(Object.keys(outputs)).toEqual(expect.arrayContaining(["ApiUrl", "WebhookUrl", "TableName"]));
    expect(JSON.stringify(outputs.WebhookUrl.Value)).toContain("/v1/stripe/webhook");
    expect(refsIn(outputs.TableName.Value)).toEqual([logicalId(synth.stack, synth.stack.table.node.defaultChild)]);
  });
});

describe("DynamoDB table", () => {
  it("is built from lib/ledger/table-definition: keys, LSI, sparse KEYS_ONLY GSIs, TTL", () => {
    const tables = ofType("AWS::DynamoDB::Table");
    expect(tables).toHaveLength(1);
    const p = tables[0]?.[1].Properties;
    expect(p.KeySchema).toEqual([
      { AttributeName: "pk", KeyType: "HASH" },
      { AttributeName: "sk", KeyType: "RANGE" },
    ]);
    expect(p.TimeToLiveSpecification).toEqual({ AttributeName: tableDefinition.ttlAttribute, Enabled: true });
    expect(p.TimeToLiveSpecification.AttributeName).toBe("ttl");
    // Same indexes and projections as lib/ledger/create-table.ts gives the test tables.
    expect(p.LocalSecondaryIndexes).toEqual(
      tableDefinition.localIndexes.map((index) => ({
        IndexName: index.name,
        KeySchema: [
          { AttributeName: "pk", KeyType: "HASH" },
          { AttributeName: index.sortKey.name, KeyType: "RANGE" },
        ],
        Projection: { ProjectionType: "ALL" },
      })),
    );
    expect(p.GlobalSecondaryIndexes).toEqual(
      tableDefinition.globalIndexes.map((index) => ({
        IndexName: index.name,
        KeySchema: [
          { AttributeName: index.partitionKey.name, KeyType: "HASH" },
          { AttributeName: index.sortKey.name, KeyType: "RANGE" },
        ],
        Projection: { ProjectionType: "KEYS_ONLY" },
      })),
    );
    expect(p.LocalSecondaryIndexes.map((i: Json) => i.IndexName)).toEqual(["history"]);
    expect(p.GlobalSecondaryIndexes.map((i: Json) => i.IndexName).sort()).toEqual(["grantDue", "holdDue"]);
    const types = Object.fromEntries(p.AttributeDefinitions.map((a: Json) => [a.AttributeName, a.AttributeType]));
    expect(types).toEqual({ pk: "S", sk: "S", entrySeq: "N", grantShard: "S", nextGrantAt: "N", holdShard: "S", holdDueAt: "N" });
  });

  it("is on-demand, with point-in-time recovery, deletion protection and a retain policy", () => {
    const table = only("AWS::DynamoDB::Table");
    expect(table.Properties.BillingMode).toBe("PAY_PER_REQUEST");
    expect(table.Properties.PointInTimeRecoverySpecification).toEqual({ PointInTimeRecoveryEnabled: true });
    expect(table.Properties.DeletionProtectionEnabled).toBe(true);
    expect(table.DeletionPolicy).toBe("Retain");
    expect(table.UpdateReplacePolicy).toBe("Retain");
  });
});

describe("functions", () => {
  it("are exactly one per lib/routes.ts entry, FUNCTIONS, EVENT_FUNCTIONS, PROXY_FUNCTION and TOPUP_FUNCTION (no hidden helper Lambdas)", () => {
    // the chat proxy (test/infra/proxy-stack.test.ts) and auto top-up (test/infra/auto-top-up-stack.test.ts)
    // are the two functions outside both tables
    expect(ofType("AWS::Lambda::Function")).toHaveLength(FUNCTION_NAMES.length + Object.keys(EVENT_FUNCTIONS).length + 2);
  });

  it.each(FUNCTION_NAMES)("%s: nodejs24.x on arm64, ESM handler, memory/timeout from its spec, own log group", (name) => {
    const p = fnProps(name);
    expect(p.Runtime).toBe("nodejs24.x");
    expect(p.Architectures).toEqual(["arm64"]);
    expect(p.Handler).toBe("index.handler");
    expect(p.MemorySize).toBe(FUNCTIONS[name].memoryMb);
    expect(p.Timeout).toBe(FUNCTIONS[name].timeoutSeconds);
    expect(p.Environment.Variables).toMatchObject({ NODE_OPTIONS: "--enable-source-maps", POWERTOOLS_SERVICE_NAME: SERVICE_NAME });
    expect(refsIn(p.Environment.Variables.TABLE_NAME)).toEqual([logicalId(synth.stack, synth.stack.table.node.defaultChild)]);
    const [logGroupId] = refsIn(p.LoggingConfig.LogGroup);
    expect(resources[logGroupId as string]).toMatchObject({ Type: "AWS::Logs::LogGroup", Properties: { RetentionInDays: 30 } });
  });

  it("gives the sweep the longest timeout", () => {
    const others = FUNCTION_NAMES.filter((name) => name !== "monthlyGrantSweep").map((name) => fnProps(name).Timeout);
    expect(fnProps("monthlyGrantSweep").Timeout).toBeGreaterThan(Math.max(...others));
  });

  it("passes the ledger and auth settings the functions validate, prices to billing functions only", () => {
    for (const name of FUNCTION_NAMES) {
      const env = fnProps(name).Environment.Variables;
      expect(env).toMatchObject({ AUTHORIZE_RATE_LIMIT_PER_MINUTE: "600", HOLD_TTL_SECONDS: "900" });
      if (FUNCTIONS[name].auth === "jwt") {
        expect(env).toMatchObject({
          APP_URL: CONTEXT.appUrl,
          AUTH_ISSUER: CONTEXT.authIssuer,
          AUTH_AUDIENCE: CONTEXT.authAudience,
          AUTH_SERVICE_AUDIENCE: CONTEXT.authServiceAudience,
        });
      }
      if (BILLING.includes(name)) expect(env).toMatchObject(PRICES);
      else expect(Object.keys(env).filter((key) => key.startsWith("STRIPE_PRICE_"))).toEqual([]);
    }
    expect(fnProps("monthlyGrantSweep").Environment.Variables.APP_URL).toBeUndefined();
  });

  it("gives the sweep what its parked-event retries apply events with: the Stripe key and the price ids, no webhook or JWT secret", () => {
    const env = fnProps("monthlyGrantSweep").Environment.Variables;
    expect(env).toMatchObject(PRICES);
    expect(refsIn(env.STRIPE_SECRET_KEY_ARN)).toEqual([logicalId(synth.stack, (synth.stack.secrets.get("STRIPE_SECRET_KEY") as Json).node.defaultChild)]);
    expect(env.STRIPE_WEBHOOK_SECRET_ARN).toBeUndefined();
    expect(env.AUTH_JWT_SECRET_ARN).toBeUndefined();
    const granted = roleStatements("monthlyGrantSweep").filter((s) => s.Action.includes("secretsmanager:GetSecretValue"));
    expect(granted.flatMap((s) => s.Resource).flatMap(refsIn)).toEqual(refsIn(env.STRIPE_SECRET_KEY_ARN));
  });
});

describe("IAM: least privilege per function", () => {
  it("no policy in the stack grants a wildcard action (dynamodb:* or *)", () => {
    const documents = [
      ...ofType("AWS::IAM::Policy").map(([, p]) => p.Properties.PolicyDocument),
      ...ofType("AWS::IAM::Role").flatMap(([, r]) => (r.Properties.Policies ?? []).map((p: Json) => p.PolicyDocument)),
    ];
    const actions = documents.flatMap((d) => d.Statement.flatMap((s: Json) => asArray(s.Action)));
    expect(actions.length).toBeGreaterThan(0);
    expect(actions.filter((a: string) => a === "*" || a.endsWith(":*") || (a.startsWith("dynamodb:") && a.includes("*")))).toEqual([]);
  });

  it("roles carry no managed policies (not even AWSLambdaBasicExecutionRole)", () => {
    for (const name of FUNCTION_NAMES) expect(resources[roleId(name)].Properties.ManagedPolicyArns).toBeUndefined();
  });

  it("read-only functions can read but not write (the credits reader and the billing portal)", () => {
    // Guards against this test going vacuous: credits and portal must stay readers in lib/routes.ts.
    expect(FUNCTIONS.credits.table).toBe("read");
    expect(FUNCTIONS.portal.table).toBe("read");
    const readers = FUNCTION_NAMES.filter((name) => FUNCTIONS[name].table === "read");
    expect(readers).toEqual(expect.arrayContaining(["credits", "portal"]));
    for (const name of readers) {
      const actions = actionsOf(name, "dynamodb");
      expect(actions).toEqual(expect.arrayContaining(["dynamodb:GetItem", "dynamodb:Query"]));
      expect(actions.filter((a) => WRITE_ACTIONS.includes(a) || a === "dynamodb:ConditionCheckItem")).toEqual([]);
    }
    // The portal only reads the account's Stripe customer: exactly the read actions, nothing else of DynamoDB.
    expect([...new Set(actionsOf("portal", "dynamodb"))].sort()).toEqual(["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:Query"]);
  });

  it.each(FUNCTION_NAMES.filter((name) => FUNCTIONS[name].table === "readWrite"))(
    "%s may put and update items, never delete, batch-write or scan",
    (name) => {
      const actions = actionsOf(name, "dynamodb");
      expect(actions).toEqual(expect.arrayContaining(["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem", "dynamodb:UpdateItem"]));
      expect(actions.filter((a) => ["dynamodb:DeleteItem", "dynamodb:BatchWriteItem", "dynamodb:Scan"].includes(a))).toEqual([]);
    },
  );

  it.each(FUNCTION_NAMES)("%s: table actions only on the table and its named indexes", (name) => {
    const tableId = logicalId(synth.stack, synth.stack.table.node.defaultChild);
    const indexNames = [...tableDefinition.localIndexes, ...tableDefinition.globalIndexes].map((i) => i.name);
    const resourcesGranted = roleStatements(name)
      .filter((s) => s.Action.some((a) => a.startsWith("dynamodb:")))
      .flatMap((s) => s.Resource);
    expect(resourcesGranted.length).toBeGreaterThan(0);
    for (const resource of resourcesGranted) {
      expect(resource).not.toBe("*");
      if (resource["Fn::GetAtt"]) expect(resource).toEqual({ "Fn::GetAtt": [tableId, "Arn"] });
      else expect(resource).toEqual({ "Fn::Join": ["", [{ "Fn::GetAtt": [tableId, "Arn"] }, expect.stringMatching(new RegExp(`^/index/(${indexNames.join("|")})$`))]] });
    }
  });

  it.each(FUNCTION_NAMES)("%s: GetSecretValue on exactly the secrets its spec names, nothing else of Secrets Manager", (name) => {
    const statements = roleStatements(name).filter((s) => s.Action.some((a) => a.startsWith("secretsmanager:")));
    expect(statements.flatMap((s) => s.Action)).toEqual(FUNCTIONS[name].secrets.length ? ["secretsmanager:GetSecretValue"] : []);
    const granted = statements.flatMap((s) => s.Resource).flatMap(refsIn).sort();
    const expected = FUNCTIONS[name].secrets.map((secret) => logicalId(synth.stack, (synth.stack.secrets.get(secret) as Json).node.defaultChild));
    expect(granted).toEqual(expected.sort());
  });

  it.each(FUNCTION_NAMES)("%s writes logs only to its own log group", (name) => {
    const ownLogGroup = logicalId(synth.stack, synth.stack.functions[name].logGroup.node.defaultChild);
    const statements = roleStatements(name).filter((s) => s.Action.some((a) => a.startsWith("logs:")));
    expect(statements.flatMap((s) => s.Action).sort()).toEqual(["logs:CreateLogStream", "logs:PutLogEvents"]);
    expect(new Set(statements.flatMap((s) => s.Resource).flatMap(refsIn))).toEqual(new Set([ownLogGroup]));
  });
});

describe("secrets", () => {
  it("are never in the template: functions get <NAME>_ARN references to their own secrets only", () => {
    const text = JSON.stringify(template.toJSON());
    for (const value of Object.values(SECRET_LOOKALIKES)) expect(text).not.toContain(value);
    for (const name of FUNCTION_NAMES) {
      const env = fnProps(name).Environment.Variables;
      for (const secret of ["AUTH_JWT_SECRET", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"] as const) {
        expect(env[secret]).toBeUndefined();
        const reference = env[`${secret}_ARN`];
        if ((FUNCTIONS[name].secrets as readonly string[]).includes(secret)) {
          const [secretId] = refsIn(reference);
          expect(resources[secretId as string].Type).toBe("AWS::SecretsManager::Secret");
        } else {
          expect(reference).toBeUndefined();
        }
      }
    }
  });

  it("are created with a placeholder marker, never a plain SecretString", () => {
    const secrets = ofType("AWS::SecretsManager::Secret");
    // the three of the functions of lib/routes.ts FUNCTIONS, the webhook signing secret (APP_WEBHOOK_SECRET)
    // and the chat proxy's model provider key (UPSTREAM_API_KEY)
    expect(secrets).toHaveLength(5);
    for (const [, secret] of secrets) {
      expect(secret.Properties.SecretString).toBeUndefined();
      expect(JSON.parse(secret.Properties.GenerateSecretString.SecretStringTemplate)).toHaveProperty(SECRET_PLACEHOLDER_KEY);
    }
  });
});

describe("sweep schedule", () => {
  it("runs the sweep on lib/routes.ts's schedule, retried by EventBridge, failures to an encrypted DLQ", () => {
    const dlqId = logicalId(synth.stack, synth.stack.sweepDlq.node.defaultChild);
    const rules = ofType("AWS::Events::Rule").map(([, r]) => r.Properties);
    expect(rules).toHaveLength(1);
    expect(rules[0]).toMatchObject({ ScheduleExpression: FUNCTIONS.monthlyGrantSweep.schedule, State: "ENABLED" });
    expect(rules[0].Targets).toHaveLength(1);
    const [target] = rules[0].Targets;
    expect(refsIn(target.Arn)).toEqual([fnId("monthlyGrantSweep")]);
    expect(target.RetryPolicy.MaximumRetryAttempts).toBe(2);
    expect(refsIn(target.DeadLetterConfig.Arn)).toEqual([dlqId]);

    const invokeConfigs = ofType("AWS::Lambda::EventInvokeConfig").map(([, c]) => c.Properties);
    expect(invokeConfigs).toHaveLength(1);
    expect(refsIn(invokeConfigs[0].FunctionName)).toEqual([fnId("monthlyGrantSweep")]);
    expect(invokeConfigs[0].MaximumRetryAttempts).toBe(0);
    expect(refsIn(invokeConfigs[0].DestinationConfig.OnFailure.Destination)).toEqual([dlqId]);

    expect(resources[dlqId].Properties.SqsManagedSseEnabled).toBe(true);
    const queuePolicy = ofType("AWS::SQS::QueuePolicy").find(([, policy]) => refsIn(policy.Properties.Queues).includes(dlqId))?.[1];
    expect(queuePolicy.Properties.PolicyDocument.Statement).toEqual(
      expect.arrayContaining([expect.objectContaining({ Effect: "Deny", Condition: { Bool: { "aws:SecureTransport": "false" } } })]),
    );
  });
});

describe("alarms", () => {
  const alarms = () => ofType("AWS::CloudWatch::Alarm").map(([, a]) => a.Properties);
  const topicId = () => logicalId(synth.stack, synth.stack.alarmTopic.node.defaultChild);

  it("all notify the encrypted alarm topic", () => {
    expect(alarms().length).toBeGreaterThan(0);
    for (const alarm of alarms()) expect(alarm.AlarmActions).toEqual([{ Ref: topicId() }]);
    expect(resources[topicId()].Properties.KmsMasterKeyId).toBeDefined();
  });

  it("lets CloudWatch publish to the topic and use its key (the topic's own policy replaces SNS's default)", () => {
    const statements = only("AWS::SNS::TopicPolicy").Properties.PolicyDocument.Statement;
    expect(statements).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ Effect: "Allow", Principal: { Service: "cloudwatch.amazonaws.com" }, Action: "sns:Publish" }),
        expect.objectContaining({ Effect: "Deny", Condition: { Bool: { "aws:SecureTransport": "false" } } }),
      ]),
    );
    const keyStatements = only("AWS::KMS::Key").Properties.KeyPolicy.Statement;
    expect(keyStatements).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ Principal: { Service: "cloudwatch.amazonaws.com" }, Action: ["kms:Decrypt", "kms:GenerateDataKey*"] }),
      ]),
    );
  });

  it.each(FUNCTION_NAMES)("%s has an Errors and a Throttles alarm", (name) => {
    for (const metric of ["Errors", "Throttles"]) {
      const found = alarms().filter(
        (a) => a.Namespace === "AWS/Lambda" && a.MetricName === metric && refsIn(a.Dimensions).includes(fnId(name)),
      );
      expect(found, `${name} ${metric}`).toHaveLength(1);
      expect(found[0].Threshold).toBe(1);
    }
  });

  it("watches the webhook's 5xx rate on its API route", () => {
    const rate = alarms().find((a) => JSON.stringify(a.Metrics ?? []).includes('"5xx"'));
    expect(rate).toBeDefined();
    const stats = rate.Metrics.filter((m: Json) => m.MetricStat).map((m: Json) => m.MetricStat.Metric);
    expect(stats.map((m: Json) => m.MetricName).sort()).toEqual(["5xx", "Count"]);
    for (const metric of stats) {
      const dims = Object.fromEntries(metric.Dimensions.map((d: Json) => [d.Name, d.Value]));
      expect(dims).toMatchObject({ Resource: "/v1/stripe/webhook", Method: "POST", Stage: "$default" });
    }
    expect(rate.Metrics.find((m: Json) => m.Expression)?.Expression).toContain("100 * errors / requests");
  });

  it.each([
    ["any second live subscription", BILLING_METRICS.secondLiveSubscription],
    ["any parked Stripe event (the total the webhook writes besides the per-reason series)", BILLING_METRICS.parkedStripeEvents],
  ])("alarms on %s (billing's EMF metric, as the webhook emits it)", (_what, metricName) => {
    const found = alarms().filter((a) => a.MetricName === metricName);
    expect(found).toHaveLength(1);
    // Namespace and service dimension must be what lib/billing/metrics.ts writes in the webhook.
    const webhookService = fnProps("webhook").Environment.Variables.POWERTOOLS_SERVICE_NAME;
    expect(found[0]).toMatchObject({
      Namespace: METRICS_NAMESPACE,
      Dimensions: [{ Name: "service", Value: webhookService }],
      Statistic: "Sum",
      Threshold: 1,
      ComparisonOperator: "GreaterThanOrEqualToThreshold",
      TreatMissingData: "notBreaching",
    });
  });

  it("watches the sweep: SweepFailed from its EMF metrics, its DLQ, and that it runs at all", () => {
    const sweepService = fnProps("monthlyGrantSweep").Environment.Variables.POWERTOOLS_SERVICE_NAME;
    const failed = alarms().find((a) => a.MetricName === "SweepFailed");
    // The dimension must be what the sweep's Powertools Metrics emits (service = POWERTOOLS_SERVICE_NAME).
    expect(failed).toMatchObject({ Namespace: METRICS_NAMESPACE, Dimensions: [{ Name: "service", Value: sweepService }], Threshold: 1 });
    expect(METRICS_NAMESPACE).toBe("creditgate");
    const dlqId = logicalId(synth.stack, synth.stack.sweepDlq.node.defaultChild);
    expect(alarms().find((a) => a.MetricName === "ApproximateNumberOfMessagesVisible" && refsIn(a.Dimensions).includes(dlqId))).toBeDefined();
    const notRunning = alarms().find((a) => a.MetricName === "Invocations" && refsIn(a.Dimensions).includes(fnId("monthlyGrantSweep")));
    expect(notRunning).toMatchObject({ ComparisonOperator: "LessThanThreshold", TreatMissingData: "breaching" });
  });
});

describe("cdk-nag (AwsSolutions)", () => {
  it("finds nothing unacknowledged, errors or warnings", () => {
    const report = new AwsSolutionsChecks(undefined, { verbose: true }).validateScope(synth.stack);
    const findings = report.violations.map((v) => `${v.ruleName} (${v.severity}): ${v.violatingResources.map((r) => r.constructPath).join(", ")}`);
    expect(findings).toEqual([]);
  });

  it("every acknowledgment carries a written reason", () => {
    const acknowledged: [string, string][] = [];
    const walk = (scope: Json) => {
      for (const entry of scope.node.metadata) {
        if (entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY) acknowledged.push(...(Object.entries(entry.data) as [string, string][]));
      }
      for (const child of scope.node.children) walk(child);
    };
    walk(synth.stack);
    expect(acknowledged.map(([id]) => id.replace(/^annotation::/i, "")).sort()).toEqual([
      "AwsSolutions-APIG4",
      // the stream consumer's dynamodb:ListStreams (no resource-level permission exists for it)
      "AwsSolutions-IAM5[Resource::*]",
      // one per created secret (five)
      "AwsSolutions-SMG4",
      "AwsSolutions-SMG4",
      "AwsSolutions-SMG4",
      "AwsSolutions-SMG4",
      "AwsSolutions-SMG4",
      "AwsSolutions-SQS3",
      // the webhook DLQ and the stream consumer's on-failure queue are dead-letter queues themselves
      "AwsSolutions-SQS3",
      "AwsSolutions-SQS3",
    ]);
    for (const [, reason] of acknowledged) expect(reason.length).toBeGreaterThanOrEqual(40);
  });
});
