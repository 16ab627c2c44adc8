import { App } from "aws-cdk-lib";
import { Annotations, Match, Template } from "aws-cdk-lib/assertions";
import { AwsSolutionsChecks } from "cdk-nag";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_OUTPUT_TOKENS } from "../../lib/pricing.js";
import { PAYER_HEADER } from "../../lib/proxy/payer.js";
import { PROXY_FUNCTION } from "../../lib/routes.js";
import { SECRET_PLACEHOLDER_KEY } from "../../lib/secrets.js";
import { TABLE_ACTIONS } from "../../infra/constructs/functions.js";
import { stackPropsFromContext } from "../../infra/context.js";
import { CreditgateStack, type CreditgateStackProps } from "../../infra/stack.js";
import { logicalId, type Synthesized, synthStack } from "./synth.js";

// biome-ignore lint/suspicious/noExplicitAny: CloudFormation JSON
type Json = any;

/** The chat proxy's part of the stack (infra/constructs/proxy.ts). */

/** Real-looking secrets in the synth process's environment: none may reach the template. */
const SECRET_LOOKALIKES = {
  AUTH_JWT_SECRET: "jwt-secret-that-must-never-reach-the-template-0002",
  UPSTREAM_API_KEY: "sk-or-v1-mustNeverReachTheTemplate0002",
};
const CONTEXT: Record<string, string> = {
  appUrl: "https://app.example.test/dashboard",
  authIssuer: "https://issuer.example.test",
  authAudience: "creditgate-api",
  authServiceAudience: "creditgate-gate",
  holdTtlSeconds: "1200",
  upstreamBaseUrl: "https://llm.example.test/api/v1",
  proxyMaxOutputTokens: "8192",
};
const APP_ORIGIN = "https://app.example.test";

let synth: Synthesized;
let template: Template;
let resources: Record<string, Json>;

beforeAll(() => {
  // Props built as infra/app.ts builds them: from context, with secrets in the environment.
  const { props } = stackPropsFromContext((key) => CONTEXT[key], { ...SECRET_LOOKALIKES });
  synth = synthStack(props);
  template = Template.fromStack(synth.stack);
  resources = template.toJSON().Resources;
}, 120_000);

afterAll(() => synth?.cleanup());

const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type) as [string, Json][];
const asArray = <T>(value: T | T[]): T[] => (Array.isArray(value) ? value : [value]);
/** Logical ids a value refers to (Ref / Fn::GetAtt), pseudo parameters (AWS::…) left out. */
const refsIn = (value: unknown) =>
  [...JSON.stringify(value).matchAll(/"(?:Ref|Fn::GetAtt)":\s*\[?"([^"]+)"/g)].map((m) => m[1] as string).filter((id) => !id.startsWith("AWS::"));
const idOf = (construct: { node: { defaultChild?: unknown } }) => logicalId(synth.stack, construct.node.defaultChild);
const proxyId = () => idOf(synth.stack.proxy.function.fn);
const proxyProps = () => resources[proxyId()].Properties;
const secretId = (name: "AUTH_JWT_SECRET" | "UPSTREAM_API_KEY") => idOf(synth.stack.secrets.get(name) as Json);

/** Every statement of every identity policy attached to a role. */
function statementsOf(roleLogicalId: string): Statement[] {
  return ofType("AWS::IAM::Policy")
    .filter(([, policy]) => policy.Properties.Roles.some((r: Json) => r.Ref === roleLogicalId))
    .flatMap(([, policy]) => policy.Properties.PolicyDocument.Statement)
    .map((s: Json) => ({ ...s, Action: asArray(s.Action), Resource: asArray(s.Resource) }));
}
const proxyStatements = () => statementsOf(idOf(synth.stack.proxy.function.role));
const gateStatements = () => statementsOf(idOf(synth.stack.functions.chatGate.role));
type Statement = { Action: string[]; Resource: Json[]; Effect: string };
const ofService = (statements: Statement[], service: string) =>
  statements.filter((s) => s.Action.some((a) => a.startsWith(`${service}:`)));

describe("chat proxy function", () => {
  it("is a nodejs24.x arm64 ESM handler with PROXY_FUNCTION's memory and timeout, logging to its own group", () => {
    const p = proxyProps();
    expect(p).toMatchObject({
      Runtime: "nodejs24.x",
      Architectures: ["arm64"],
      Handler: "index.handler",
      MemorySize: PROXY_FUNCTION.memoryMb,
      Timeout: PROXY_FUNCTION.timeoutSeconds,
    });
    expect(p.Timeout).toBe(600);
    expect(refsIn(p.LoggingConfig.LogGroup)).toEqual([idOf(synth.stack.proxy.function.logGroup)]);
    expect(resources[idOf(synth.stack.proxy.function.logGroup)].Properties.RetentionInDays).toBe(30);
  });

  it("is not behind the HTTP API: no route integrates it", () => {
    const integrations = ofType("AWS::ApiGatewayV2::Integration").flatMap(([, i]) => refsIn(i.Properties.IntegrationUri));
    expect(integrations.length).toBeGreaterThan(0);
    expect(integrations).not.toContain(proxyId());
  });

  it("gets its settings as the ledger functions do, the upstream from context, and secrets as ARNs only", () => {
    const env = proxyProps().Environment.Variables;
    expect(env).toMatchObject({
      NODE_OPTIONS: "--enable-source-maps",
      POWERTOOLS_SERVICE_NAME: "creditgate",
      POWERTOOLS_METRICS_NAMESPACE: "creditgate",
      POWERTOOLS_LOG_LEVEL: "INFO",
      HOLD_TTL_SECONDS: "1200",
      AUTHORIZE_RATE_LIMIT_PER_MINUTE: "600",
      AUTH_ISSUER: CONTEXT.authIssuer,
      AUTH_AUDIENCE: CONTEXT.authAudience,
      AUTH_SERVICE_AUDIENCE: CONTEXT.authServiceAudience,
      UPSTREAM_BASE_URL: CONTEXT.upstreamBaseUrl,
      PROXY_MAX_OUTPUT_TOKENS: CONTEXT.proxyMaxOutputTokens,
    });
    // the same ledger and auth share as the chat gate, whose holds it takes and settles
    const gateEnv = resources[idOf(synth.stack.functions.chatGate.fn)].Properties.Environment.Variables;
    for (const key of ["HOLD_TTL_SECONDS", "AUTHORIZE_RATE_LIMIT_PER_MINUTE", "AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_SERVICE_AUDIENCE"]) {
      expect(env[key], key).toBe(gateEnv[key]);
    }
    expect(refsIn(env.TABLE_NAME)).toEqual([idOf(synth.stack.table)]);
    expect(refsIn(env.UPSTREAM_API_KEY_ARN)).toEqual([secretId("UPSTREAM_API_KEY")]);
    expect(refsIn(env.AUTH_JWT_SECRET_ARN)).toEqual([secretId("AUTH_JWT_SECRET")]);
    expect(resources[secretId("UPSTREAM_API_KEY")].Type).toBe("AWS::SecretsManager::Secret");
    for (const plain of ["UPSTREAM_API_KEY", "AUTH_JWT_SECRET", "APP_URL", "STRIPE_SECRET_KEY_ARN"]) expect(env[plain], plain).toBeUndefined();
    // nothing but the two secret ARNs among its *_ARN variables
    expect(Object.keys(env).filter((key) => key.endsWith("_ARN")).sort()).toEqual(["AUTH_JWT_SECRET_ARN", "UPSTREAM_API_KEY_ARN"]);
  });

  it("never puts a secret value in the template; the upstream key's secret starts as the placeholder, with an output to put it", () => {
    const text = JSON.stringify(template.toJSON());
    // (a boolean, so a failure does not print the whole template)
    for (const value of Object.values(SECRET_LOOKALIKES)) expect(text.includes(value), value).toBe(false);
    const secret = resources[secretId("UPSTREAM_API_KEY")].Properties;
    expect(secret.SecretString).toBeUndefined();
    expect(JSON.parse(secret.GenerateSecretString.SecretStringTemplate)).toHaveProperty(SECRET_PLACEHOLDER_KEY);
    expect(refsIn(template.toJSON().Outputs.UpstreamApiKeySecretArn.Value)).toEqual([secretId("UPSTREAM_API_KEY")]);
  });
});

describe("Function URL", () => {
  const url = () => {
    const urls = ofType("AWS::Lambda::Url");
    expect(urls).toHaveLength(1);
    return (urls[0] as [string, Json])[1].Properties;
  };

  it("targets the proxy, without IAM auth (the function verifies the JWT), in response-streaming mode", () => {
    expect(refsIn(url().TargetFunctionArn)).toEqual([proxyId()]);
    expect(url().AuthType).toBe("NONE");
    expect(url().InvokeMode).toBe("RESPONSE_STREAM");
  });

  it("allows CORS from the app's origin only, for POST and GET, with the proxy's request headers; exposes x-request-id", () => {
    const cors = url().Cors;
    expect(cors.AllowOrigins).toEqual([APP_ORIGIN]);
    expect([...cors.AllowMethods].sort()).toEqual(["GET", "POST"]);
    expect([...cors.AllowHeaders].sort()).toEqual(["authorization", "content-type", PAYER_HEADER, "x-request-id"].sort());
    expect(cors.ExposeHeaders).toEqual(["x-request-id"]);
    expect(cors.AllowCredentials).toBeUndefined();
  });

  it("is public only through the URL: the stack's only public invoke permissions are the URL's two, on the proxy", () => {
    const publicPermissions = ofType("AWS::Lambda::Permission")
      .map(([, p]) => p.Properties)
      .filter((p) => p.Principal === "*");
    expect(publicPermissions).toHaveLength(2);
    for (const permission of publicPermissions) expect(refsIn(permission.FunctionName)).toEqual([proxyId()]);
    const byAction = Object.fromEntries(publicPermissions.map((p) => [p.Action, p]));
    expect(byAction["lambda:InvokeFunctionUrl"]).toMatchObject({ FunctionUrlAuthType: "NONE" });
    expect(byAction["lambda:InvokeFunction"]).toMatchObject({ InvokedViaFunctionUrl: true });
  });

  it("is the stack output ProxyUrl", () => {
    const output = template.toJSON().Outputs.ProxyUrl;
    expect(output.Value).toEqual({ "Fn::GetAtt": [idOf(synth.stack.proxy.url), "FunctionUrl"] });
    expect(resources[idOf(synth.stack.proxy.url)].Type).toBe("AWS::Lambda::Url");
  });
});

describe("IAM: the proxy's own role", () => {
  it("carries no managed and no inline policies, only its default policy", () => {
    const role = resources[idOf(synth.stack.proxy.function.role)].Properties;
    expect(role.ManagedPolicyArns).toBeUndefined();
    expect(role.Policies).toBeUndefined();
    expect(role.AssumeRolePolicyDocument.Statement).toEqual([
      expect.objectContaining({ Action: "sts:AssumeRole", Principal: { Service: "lambda.amazonaws.com" } }),
    ]);
  });

  it("may use the table as the chat gate may: exactly the readWrite actions, on the same table and indexes", () => {
    const actions = ofService(proxyStatements(), "dynamodb").flatMap((s) => s.Action);
    expect([...actions].sort()).toEqual([...TABLE_ACTIONS.readWrite].sort());
    expect([...actions].sort()).toEqual(
      [
        "dynamodb:BatchGetItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
      ].sort(),
    );
    const grants = (statements: Statement[]) =>
      ofService(statements, "dynamodb")
        .map((s) => JSON.stringify({ actions: [...s.Action].sort(), resources: s.Resource }))
        .sort();
    expect(grants(proxyStatements())).toEqual(grants(gateStatements()));
    const tableId = idOf(synth.stack.table);
    const granted = ofService(proxyStatements(), "dynamodb").flatMap((s) => s.Resource);
    expect(granted.length).toBeGreaterThan(0);
    for (const resource of granted) {
      if (resource["Fn::GetAtt"]) expect(resource).toEqual({ "Fn::GetAtt": [tableId, "Arn"] });
      else expect(resource).toEqual({ "Fn::Join": ["", [{ "Fn::GetAtt": [tableId, "Arn"] }, expect.stringMatching(/^\/index\/\w+$/)]] });
    }
  });

  it("may read exactly its two secrets", () => {
    const statements = ofService(proxyStatements(), "secretsmanager");
    expect(statements.flatMap((s) => s.Action)).toEqual(["secretsmanager:GetSecretValue"]);
    expect(statements.flatMap((s) => s.Resource).flatMap(refsIn).sort()).toEqual([secretId("AUTH_JWT_SECRET"), secretId("UPSTREAM_API_KEY")].sort());
    expect(statements.flatMap((s) => s.Resource)).toHaveLength(2);
  });

  it("writes only its own log group, and has nothing of any other service", () => {
    const logs = ofService(proxyStatements(), "logs");
    expect(logs.flatMap((s) => s.Action).sort()).toEqual(["logs:CreateLogStream", "logs:PutLogEvents"]);
    expect(new Set(logs.flatMap((s) => s.Resource).flatMap(refsIn))).toEqual(new Set([idOf(synth.stack.proxy.function.logGroup)]));
    const services = new Set(proxyStatements().flatMap((s) => s.Action.map((a) => a.split(":")[0])));
    expect(services).toEqual(new Set(["logs", "dynamodb", "secretsmanager"]));
    for (const statement of proxyStatements()) {
      expect(statement.Effect).toBe("Allow");
      expect(statement.Resource).not.toContain("*");
    }
  });
});

describe("alarms", () => {
  it.each(["Errors", "Throttles"])("has a %s alarm on the proxy that notifies the alarm topic", (metric) => {
    const found = ofType("AWS::CloudWatch::Alarm")
      .map(([, a]) => a.Properties)
      .filter((a) => a.Namespace === "AWS/Lambda" && a.MetricName === metric && refsIn(a.Dimensions).includes(proxyId()));
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ Threshold: 1, ComparisonOperator: "GreaterThanOrEqualToThreshold", TreatMissingData: "notBreaching" });
    expect(found[0].AlarmActions).toEqual([{ Ref: idOf(synth.stack.alarmTopic) }]);
  });

  it("alarms on any finished call the proxy could not charge (ProxySettleFailed)", () => {
    const found = ofType("AWS::CloudWatch::Alarm")
      .map(([, a]) => a.Properties)
      .filter((a) => a.Namespace === "creditgate" && a.MetricName === "ProxySettleFailed");
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ Threshold: 1, ComparisonOperator: "GreaterThanOrEqualToThreshold" });
    expect(found[0].AlarmActions).toEqual([{ Ref: idOf(synth.stack.alarmTopic) }]);
  });
});

describe("cdk-nag (AwsSolutions)", () => {
  it("finds nothing on the proxy's resources", () => {
    const report = new AwsSolutionsChecks(undefined, { verbose: true }).validateScope(synth.stack);
    const findings = report.violations
      .flatMap((v) => v.violatingResources.map((r) => `${v.ruleName}: ${r.constructPath}`))
      .filter((finding) => /chatProxy|UpstreamApiKey/.test(finding));
    expect(findings).toEqual([]);
  });
});

/**
 * Stacks built without bundling (CDK skips it for stacks not in `aws:cdk:bundling-stacks`): the
 * template is complete but for the code assets, and these run fast.
 */
const unbundled = (props: Partial<CreditgateStackProps>) =>
  new CreditgateStack(new App({ context: { "aws:cdk:bundling-stacks": [] } }), "Unbundled", {
    env: { account: "123456789012", region: "us-east-1" },
    appUrl: "https://app.example.test",
    ...props,
  });
const proxyEnvOf = (stack: CreditgateStack) =>
  Template.fromStack(stack).toJSON().Resources[stack.getLogicalId(stack.proxy.function.fn.node.defaultChild as never)].Properties.Environment
    .Variables;
const proxySecretResources = (stack: CreditgateStack) => {
  const roleLogicalId = stack.getLogicalId(stack.proxy.function.role.node.defaultChild as never);
  return Object.values(Template.fromStack(stack).toJSON().Resources as Record<string, Json>)
    .filter((r) => r.Type === "AWS::IAM::Policy" && r.Properties.Roles.some((ref: Json) => ref.Ref === roleLogicalId))
    .flatMap((p) => p.Properties.PolicyDocument.Statement)
    .filter((s: Json) => JSON.stringify(s.Action).includes("secretsmanager:"))
    .flatMap((s: Json) => asArray(s.Resource));
};

describe("stack options", () => {
  it("defaults the upstream and the output limit to lib/config's", () => {
    const env = proxyEnvOf(unbundled({}));
    expect(env.UPSTREAM_BASE_URL).toBe("https://openrouter.ai/api/v1");
    expect(env.PROXY_MAX_OUTPUT_TOKENS).toBe("4096");
  });

  it("with a JWKS URL: no JWT secret, AUTH_JWKS_URL instead, GetSecretValue on the upstream key only", () => {
    const stack = unbundled({ auth: { jwksUrl: "https://issuer.example.test/.well-known/jwks.json" } });
    const env = proxyEnvOf(stack);
    expect(env.AUTH_JWKS_URL).toBe("https://issuer.example.test/.well-known/jwks.json");
    expect(env.AUTH_JWT_SECRET_ARN).toBeUndefined();
    expect(stack.secrets.has("AUTH_JWT_SECRET")).toBe(false);
    const upstream = stack.getLogicalId((stack.secrets.get("UPSTREAM_API_KEY") as Json).node.defaultChild);
    expect(proxySecretResources(stack)).toEqual([{ Ref: upstream }]);
  });

  it("imports the upstream key's secret by name (context upstreamApiKeySecretName): its name, granted on that name's ARNs only", () => {
    const { props } = stackPropsFromContext((key) => ({ upstreamApiKeySecretName: "prod/creditgate/upstream" })[key], {});
    const stack = unbundled({ secretNames: props.secretNames ?? {} });
    expect(proxyEnvOf(stack).UPSTREAM_API_KEY_ARN).toBe("prod/creditgate/upstream");
    const resourcesGranted = JSON.stringify(proxySecretResources(stack));
    expect(resourcesGranted).toContain(":secret:prod/creditgate/upstream-??????");
    expect(resourcesGranted).not.toContain('"*"');
    const created = Object.values(Template.fromStack(stack).toJSON().Resources as Record<string, Json>).filter(
      (r) => r.Type === "AWS::SecretsManager::Secret" && r.Properties.Description?.includes("UPSTREAM_API_KEY"),
    );
    expect(created).toEqual([]);
  });

  it("warns when the upstream is a loopback address (nothing listens there in Lambda)", () => {
    const stack = unbundled({ upstreamBaseUrl: "http://127.0.0.1:4010/v1" });
    expect(proxyEnvOf(stack).UPSTREAM_BASE_URL).toBe("http://127.0.0.1:4010/v1");
    Annotations.fromStack(stack).hasWarning("*", Match.stringLikeRegexp("loopback"));
    Annotations.fromStack(unbundled({})).hasNoWarning("*", Match.stringLikeRegexp("loopback"));
  });

  // Validated with lib/config's own rules (profile "proxy"): a value the proxy would refuse fails the synth.
  it.each([
    [{ upstreamBaseUrl: "http://llm.example.test/v1" }, /UPSTREAM_BASE_URL must be an https URL/],
    [{ upstreamBaseUrl: "not a url" }, /UPSTREAM_BASE_URL/],
    [{ proxyMaxOutputTokens: 0 }, /PROXY_MAX_OUTPUT_TOKENS/],
    [{ proxyMaxOutputTokens: MAX_OUTPUT_TOKENS + 1 }, /PROXY_MAX_OUTPUT_TOKENS/],
  ])("refuses %o", (props, message) => {
    expect(() => unbundled(props)).toThrow(message);
  });
});

describe("context (infra/context.ts)", () => {
  it("reads upstreamBaseUrl and proxyMaxOutputTokens from context first, then UPSTREAM_BASE_URL and PROXY_MAX_OUTPUT_TOKENS", () => {
    const fromContext = stackPropsFromContext((key) => ({ upstreamBaseUrl: "https://ctx.example.test/v1", proxyMaxOutputTokens: "2048" })[key], {
      UPSTREAM_BASE_URL: "https://env.example.test/v1",
      PROXY_MAX_OUTPUT_TOKENS: "1024",
    });
    expect(fromContext.props).toMatchObject({ upstreamBaseUrl: "https://ctx.example.test/v1", proxyMaxOutputTokens: 2048 });
    const fromEnv = stackPropsFromContext(() => undefined, { UPSTREAM_BASE_URL: "https://env.example.test/v1", PROXY_MAX_OUTPUT_TOKENS: "1024" });
    expect(fromEnv.props).toMatchObject({ upstreamBaseUrl: "https://env.example.test/v1", proxyMaxOutputTokens: 1024 });
    const neither = stackPropsFromContext(() => undefined, {});
    expect(neither.props.upstreamBaseUrl).toBeUndefined();
    expect(neither.props.proxyMaxOutputTokens).toBeUndefined();
    expect(() => stackPropsFromContext((key) => (key === "proxyMaxOutputTokens" ? "lots" : undefined), {})).toThrow(
      /proxyMaxOutputTokens must be a whole number/,
    );
  });

  it("never reads the upstream key's value, even when it is in the environment", () => {
    const { props } = stackPropsFromContext(() => undefined, { UPSTREAM_API_KEY: SECRET_LOOKALIKES.UPSTREAM_API_KEY });
    expect(JSON.stringify(props)).not.toContain(SECRET_LOOKALIKES.UPSTREAM_API_KEY);
  });
});
