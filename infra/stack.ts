import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Annotations, ArnFormat, CfnOutput, Duration, RemovalPolicy, Stack, type StackProps, Tags, Validations } from "aws-cdk-lib";
import { AccessLogFormat } from "aws-cdk-lib/aws-apigateway";
import { CorsHttpMethod, HttpApi, HttpMethod, HttpStage, LogGroupLogDestination } from "aws-cdk-lib/aws-apigatewayv2";
import { HttpLambdaIntegration } from "aws-cdk-lib/aws-apigatewayv2-integrations";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import { SnsAction } from "aws-cdk-lib/aws-cloudwatch-actions";
import * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import * as events from "aws-cdk-lib/aws-events";
import * as targets from "aws-cdk-lib/aws-events-targets";
import * as iam from "aws-cdk-lib/aws-iam";
import * as kms from "aws-cdk-lib/aws-kms";
import { SqsDestination } from "aws-cdk-lib/aws-lambda-destinations";
import * as logs from "aws-cdk-lib/aws-logs";
import * as secretsmanager from "aws-cdk-lib/aws-secretsmanager";
import * as sns from "aws-cdk-lib/aws-sns";
import * as subscriptions from "aws-cdk-lib/aws-sns-subscriptions";
import * as sqs from "aws-cdk-lib/aws-sqs";
import type { Construct } from "constructs";
import { BILLING_METRICS } from "../lib/billing/metrics.js";
import { METRICS_NAMESPACE } from "../lib/metrics.js";
import { loadConfig, STRIPE_PRICE_VARS, type StripePriceVar } from "../lib/config.js";
import { type AttributeKind, tableDefinition } from "../lib/ledger/table-definition.js";
import { FUNCTIONS, type FunctionName, type FunctionSpec, type SecretName } from "../lib/routes.js";
import { SECRET_PLACEHOLDER_KEY } from "../lib/secrets.js";
import { HouseFunction } from "./house-function.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Powertools service name (logs, EMF `service` dimension) of every function; alarms match on it. */
export const SERVICE_NAME = "creditgate";
/** EMF namespace the sweep (SweepFailed, SweepGranted…) and billing (SecondLiveSubscription) write to. */
export { METRICS_NAMESPACE };

/**
 * DynamoDB actions per access level of lib/routes.ts. There is no `dynamodb:TransactWriteItems`
 * IAM action: a transaction is authorized item by item against PutItem, UpdateItem, DeleteItem and
 * (for ConditionCheck items) ConditionCheckItem (AWS docs: "Using IAM with DynamoDB transactions").
 * The ledger, billing and sweep write with PutItem/UpdateItem, directly and inside transactions;
 * nothing deletes (TTL does) or scans (only the operator CLI, not a Lambda), so neither is granted.
 */
export const TABLE_ACTIONS = {
  read: ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"],
  readWrite: [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    // Harmless (it writes nothing) and what a transaction's ConditionCheck item needs.
    "dynamodb:ConditionCheckItem",
  ],
} as const;

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
  /** HTTP API default-stage throttling (requests per second, burst) */
  apiThrottle?: { rateLimit: number; burstLimit: number };
  logRetention?: logs.RetentionDays;
  /** Tests only: handler files replacing lib/routes.ts entries (they must lie under projectRoot). */
  entries?: Partial<Record<FunctionName, string>>;
  /** where package-lock.json lives (default: this repository) */
  projectRoot?: string;
}

const attributeType = (kind: AttributeKind) =>
  kind === "N" ? dynamodb.AttributeType.NUMBER : dynamodb.AttributeType.STRING;
const attribute = (key: { name: string; type: AttributeKind }) => ({ name: key.name, type: attributeType(key.type) });
/** "chatGate" → "ChatGate", "AUTH_JWT_SECRET" → "AuthJwtSecret" (construct ids). */
const pascal = (name: string) =>
  name.includes("_")
    ? name
        .toLowerCase()
        .split("_")
        .map((word) => word.charAt(0).toUpperCase() + word.slice(1))
        .join("")
    : name.charAt(0).toUpperCase() + name.slice(1);
/**
 * cdk-nag v3 acknowledgments are CDK's own `Validations.acknowledge`; a reason is mandatory here
 * (the infra tests also check that every acknowledgment in the tree carries one).
 */
function acknowledge(scope: Construct, finding: { id: string; reason: string }): void {
  if (finding.reason.trim().length < 20) throw new Error(`cdk-nag acknowledgment ${finding.id} needs a written reason`);
  Validations.of(scope).acknowledge(finding);
}
const specs = () => Object.entries(FUNCTIONS) as [FunctionName, FunctionSpec][];

/**
 * creditgate in one stack: the table, one Lambda per entry of lib/routes.ts FUNCTIONS, the HTTP
 * API with exactly those routes, the sweep's schedule, secrets, least-privilege roles and alarms.
 */
export class CreditgateStack extends Stack {
  readonly table: dynamodb.Table;
  readonly functions = {} as Record<FunctionName, HouseFunction>;
  readonly secrets = new Map<SecretName, secretsmanager.ISecret>();
  readonly api: HttpApi;
  readonly alarmTopic: sns.Topic;
  readonly sweepDlq: sqs.Queue;

  constructor(scope: Construct, id: string, props: CreditgateStackProps) {
    super(scope, id, props);
    Tags.of(this).add("app", "creditgate");
    const projectRoot = props.projectRoot ?? ROOT;
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;

    // ---- Table: the same definition the tests and local runs create (lib/ledger/table-definition).
    this.table = new dynamodb.Table(this, "Table", {
      partitionKey: attribute(tableDefinition.partitionKey),
      sortKey: attribute(tableDefinition.sortKey),
      timeToLiveAttribute: tableDefinition.ttlAttribute,
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: true,
      // The ledger is the money: it outlives the stack.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    for (const index of tableDefinition.localIndexes) {
      this.table.addLocalSecondaryIndex({
        indexName: index.name,
        sortKey: attribute(index.sortKey),
        projectionType: dynamodb.ProjectionType.ALL,
      });
    }
    for (const index of tableDefinition.globalIndexes) {
      this.table.addGlobalSecondaryIndex({
        indexName: index.name,
        partitionKey: attribute(index.partitionKey),
        sortKey: attribute(index.sortKey),
        // As lib/ledger/create-table.ts: the sweep re-reads each due account consistently anyway.
        projectionType: dynamodb.ProjectionType.KEYS_ONLY,
      });
    }
    const indexArns = [...tableDefinition.localIndexes, ...tableDefinition.globalIndexes].map(
      (index) => `${this.table.tableArn}/index/${index.name}`,
    );

    // ---- Alarm topic (encrypted with a key CloudWatch may use: the AWS-managed SNS key it may not).
    const alarmKey = new kms.Key(this, "AlarmTopicKey", {
      description: "creditgate alarm topic",
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.DESTROY,
      pendingWindow: Duration.days(7),
    });
    alarmKey.addToResourcePolicy(
      new iam.PolicyStatement({
        principals: [new iam.ServicePrincipal("cloudwatch.amazonaws.com")],
        actions: ["kms:Decrypt", "kms:GenerateDataKey*"],
        resources: ["*"],
        conditions: { StringEquals: { "aws:SourceAccount": this.account } },
      }),
    );
    this.alarmTopic = new sns.Topic(this, "AlarmTopic", { masterKey: alarmKey, enforceSSL: true });
    // enforceSSL gives the topic a policy of its own, which replaces SNS's default (account-wide)
    // one: CloudWatch must be allowed explicitly, for this account's alarms only.
    this.alarmTopic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: "AllowCloudWatchAlarms",
        principals: [new iam.ServicePrincipal("cloudwatch.amazonaws.com")],
        actions: ["sns:Publish"],
        resources: [this.alarmTopic.topicArn],
        conditions: {
          StringEquals: { "aws:SourceAccount": this.account },
          ArnLike: { "aws:SourceArn": this.formatArn({ service: "cloudwatch", resource: "alarm", resourceName: "*", arnFormat: ArnFormat.COLON_RESOURCE_NAME }) },
        },
      }),
    );
    if (props.alarmEmail) this.alarmTopic.addSubscription(new subscriptions.EmailSubscription(props.alarmEmail));
    const alarmAction = new SnsAction(this.alarmTopic);
    const alarm = (id: string, alarmProps: cloudwatch.AlarmProps) => {
      const created = new cloudwatch.Alarm(this, id, alarmProps);
      created.addAlarmAction(alarmAction);
      return created;
    };

    // ---- Secrets: values never enter the template; functions get ARNs and read them at cold start.
    const secretFor = (name: SecretName): secretsmanager.ISecret => {
      let secret = this.secrets.get(name);
      if (!secret) {
        const imported = props.secretNames?.[name];
        secret = imported
          ? secretsmanager.Secret.fromSecretNameV2(this, `${pascal(name)}Secret`, imported)
          : new secretsmanager.Secret(this, `${pascal(name)}Secret`, {
              description: `creditgate ${name}: set the real value with aws secretsmanager put-secret-value`,
              // CloudFormation cannot create an empty secret: start with a marker lib/secrets.ts treats as unset.
              generateSecretString: {
                secretStringTemplate: JSON.stringify({ [SECRET_PLACEHOLDER_KEY]: "replace this whole value" }),
                generateStringKey: "random",
                passwordLength: 16,
              },
            });
        this.secrets.set(name, secret);
      }
      return secret;
    };
    /** GetSecretValue takes an ARN or a name; an imported-by-name secret has no full ARN. */
    const secretId = (name: SecretName) => props.secretNames?.[name] ?? secretFor(name).secretArn;
    /** The resource to grant on: a name-imported secret's ARN ends in a random 6-character suffix. */
    const secretArnForPolicy = (name: SecretName) => {
      const imported = props.secretNames?.[name];
      return imported
        ? this.formatArn({ service: "secretsmanager", resource: "secret", resourceName: `${imported}-??????`, arnFormat: ArnFormat.COLON_RESOURCE_NAME })
        : secretFor(name).secretArn;
    };

    // ---- Configuration every function validates at cold start (lib/config.ts); checked here too.
    const ledgerEnv = {
      AUTHORIZE_RATE_LIMIT_PER_MINUTE: String(props.authorizeRateLimitPerMinute ?? 600),
      HOLD_TTL_SECONDS: String(props.holdTtlSeconds ?? 900),
    };
    const authEnv: Record<string, string> = {
      ...(props.auth?.issuer ? { AUTH_ISSUER: props.auth.issuer } : {}),
      ...(props.auth?.audience ? { AUTH_AUDIENCE: props.auth.audience } : {}),
      ...(props.auth?.serviceAudience ? { AUTH_SERVICE_AUDIENCE: props.auth.serviceAudience } : {}),
      ...(props.auth?.jwksUrl ? { AUTH_JWKS_URL: props.auth.jwksUrl } : {}),
    };
    const priceEnv: Record<string, string> = Object.fromEntries(
      STRIPE_PRICE_VARS.flatMap((name) => (props.prices?.[name] ? [[name, props.prices[name]]] : [])),
    );
    // Fail the synth on a value the functions would refuse, naming it (secrets stand in as dummies).
    loadConfig(
      { TABLE_NAME: "synth-check", APP_URL: props.appUrl, AUTH_JWT_SECRET: "x".repeat(32), ...ledgerEnv, ...authEnv, ...priceEnv },
      "api",
    );
    if (Object.keys(priceEnv).length === 0) {
      Annotations.of(this).addWarningV2(
        "creditgate:prices",
        "No Stripe price ids set: subscribe/checkout answer 503 until STRIPE_PRICE_* are given (see docs/deploy.md).",
      );
    }

    // ---- One Lambda per entry of lib/routes.ts, with only the access its spec names.
    for (const [name, spec] of specs()) {
      // With a JWKS URL (OIDC issuer) tokens are verified by public key: no shared JWT secret exists.
      const secrets = spec.secrets.filter((secret) => !(secret === "AUTH_JWT_SECRET" && props.auth?.jwksUrl));
      // The functions that apply Stripe events (webhook, and the sweep's parked-event retries) or
      // start checkouts hold the Stripe key; they map prices to plans and packs: they get the ids.
      const billing = spec.secrets.includes("STRIPE_SECRET_KEY");
      const environment: Record<string, string> = {
        TABLE_NAME: this.table.tableName,
        POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
        POWERTOOLS_LOG_LEVEL: "INFO",
        ...ledgerEnv,
        // Every HTTP function builds its deps from APP_URL (CORS origin, return URLs); the sweep none.
        ...(spec.auth === "schedule" ? {} : { APP_URL: props.appUrl }),
        ...(spec.auth === "jwt" ? authEnv : {}),
        ...(billing ? priceEnv : {}),
        ...Object.fromEntries(secrets.map((secret) => [`${secret}_ARN`, secretId(secret)])),
      };
      const fn = new HouseFunction(this, name, {
        entry: props.entries?.[name] ?? join(projectRoot, spec.entry),
        description: `creditgate ${name}: ${spec.routes.join(", ") || spec.schedule || spec.auth}`,
        timeout: Duration.seconds(spec.timeoutSeconds),
        memorySize: spec.memoryMb,
        environment,
        logRetention,
        projectRoot,
        depsLockFilePath: join(projectRoot, "package-lock.json"),
      });
      this.functions[name] = fn;

      fn.role.addToPolicy(
        new iam.PolicyStatement({
          sid: "TableItems",
          actions: TABLE_ACTIONS[spec.table].filter((action) => action !== "dynamodb:Query"),
          resources: [this.table.tableArn],
        }),
      );
      fn.role.addToPolicy(
        new iam.PolicyStatement({
          sid: "TableQueries",
          actions: ["dynamodb:Query"],
          resources: [this.table.tableArn, ...indexArns],
        }),
      );
      if (secrets.length > 0) {
        fn.role.addToPolicy(
          new iam.PolicyStatement({
            sid: "ReadOwnSecrets",
            actions: ["secretsmanager:GetSecretValue"],
            resources: secrets.map(secretArnForPolicy),
          }),
        );
      }

      alarm(`${pascal(name)}ErrorsAlarm`, {
        alarmDescription: `creditgate ${name}: the function failed (unhandled error or timeout)`,
        metric: fn.fn.metricErrors({ period: Duration.minutes(5), statistic: "Sum" }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      alarm(`${pascal(name)}ThrottlesAlarm`, {
        alarmDescription: `creditgate ${name}: invocations were throttled (account or function concurrency)`,
        metric: fn.fn.metricThrottles({ period: Duration.minutes(5), statistic: "Sum" }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    }

    // ---- HTTP API: exactly the routes of lib/routes.ts.
    const accessLogs = new logs.LogGroup(this, "ApiAccessLogs", {
      retention: logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.api = new HttpApi(this, "Api", {
      description: "creditgate HTTP API",
      createDefaultStage: false,
      // Browsers call the user routes from the app only; the gate and Stripe are server-to-server.
      corsPreflight: {
        allowOrigins: [new URL(props.appUrl).origin],
        allowMethods: [CorsHttpMethod.GET, CorsHttpMethod.POST, CorsHttpMethod.OPTIONS],
        allowHeaders: ["authorization", "content-type"],
        maxAge: Duration.hours(1),
      },
    });
    const throttle = props.apiThrottle ?? { rateLimit: 100, burstLimit: 200 };
    const stage = new HttpStage(this, "DefaultStage", {
      httpApi: this.api,
      stageName: "$default",
      autoDeploy: true,
      throttle,
      // Route-level metrics: the webhook's 5xx rate alarm needs them.
      detailedMetricsEnabled: true,
      accessLogSettings: {
        destination: new LogGroupLogDestination(accessLogs),
        format: AccessLogFormat.custom(
          JSON.stringify({
            requestId: "$context.requestId",
            requestTime: "$context.requestTime",
            ip: "$context.identity.sourceIp",
            userAgent: "$context.identity.userAgent",
            routeKey: "$context.routeKey",
            status: "$context.status",
            protocol: "$context.protocol",
            responseLength: "$context.responseLength",
            responseLatency: "$context.responseLatency",
            integrationLatency: "$context.integrationLatency",
            integrationStatus: "$context.integrationStatus",
            integrationError: "$context.integrationErrorMessage",
          }),
        ),
      },
    });
    for (const [name, spec] of specs()) {
      if (spec.routes.length === 0) continue;
      const integration = new HttpLambdaIntegration(`${pascal(name)}Integration`, this.functions[name].fn);
      for (const routeKey of spec.routes) {
        const [method, path] = routeKey.split(" ") as [keyof typeof HttpMethod, string];
        if (!(method in HttpMethod) || !path?.startsWith("/")) throw new Error(`bad route key "${routeKey}" in lib/routes.ts`);
        this.api.addRoutes({ path, methods: [HttpMethod[method]], integration });
      }
    }
    // No API Gateway authorizer: every "jwt" function verifies its bearer token itself (lib/auth.ts,
    // HS256 secret or JWKS) and the gate also checks the service scope; the webhook's auth is the
    // Stripe signature. With an OIDC issuer an HttpJwtAuthorizer could reject bad tokens earlier.
    acknowledge(this.api, {
      id: "AwsSolutions-APIG4",
      reason:
        "Authorization happens in the functions: lib/auth.ts verifies the bearer JWT (and the gate's service scope) on every jwt route; the Stripe webhook is authenticated by its signature over the raw body. No route is served unauthenticated.",
    });

    // ---- Webhook health: the share of Stripe deliveries we answered 5xx (handled 500s, timeouts,
    // crashes: all make Stripe retry). Lambda Errors alone miss handled 500s, so use the route's
    // API Gateway metrics.
    const webhookRoute = specs().find(([, spec]) => spec.auth === "none")?.[1].routes[0];
    if (webhookRoute) {
      const [method, resource] = webhookRoute.split(" ") as [string, string];
      const routeMetric = (metricName: string) =>
        new cloudwatch.Metric({
          namespace: "AWS/ApiGateway",
          metricName,
          dimensionsMap: { ApiId: this.api.apiId, Stage: stage.stageName, Method: method, Resource: resource },
          statistic: "Sum",
          period: Duration.minutes(5),
        });
      alarm("WebhookServerErrorRateAlarm", {
        alarmDescription: "creditgate Stripe webhook: 5% or more of deliveries answered 5xx in 2 of the last 3 five-minute periods",
        metric: new cloudwatch.MathExpression({
          expression: "IF(requests > 0, 100 * errors / requests, 0)",
          usingMetrics: { errors: routeMetric("5xx"), requests: routeMetric("Count") },
          label: "webhook 5xx %",
          period: Duration.minutes(5),
        }),
        threshold: 5,
        evaluationPeriods: 3,
        datapointsToAlarm: 2,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      new CfnOutput(this, "WebhookUrl", {
        value: `${this.api.apiEndpoint}${resource}`,
        description: "Stripe webhook endpoint (Developers → Webhooks → Add endpoint)",
      });
    }

    // ---- Schedules: EventBridge → Lambda; failed deliveries and failed runs land in a DLQ.
    this.sweepDlq = new sqs.Queue(this, "SweepDlq", {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    acknowledge(this.sweepDlq, {
      id: "AwsSolutions-SQS3",
      reason: "This queue is itself the dead-letter queue of the scheduled sweep (EventBridge target DLQ and Lambda on-failure destination).",
    });
    for (const [name, spec] of specs()) {
      if (!spec.schedule) continue;
      const fn = this.functions[name].fn;
      // The schedule is the retry: a failed run's work stays due in the index for the next run,
      // so Lambda does not retry (no overlapping runs); the failed event goes to the DLQ.
      fn.configureAsyncInvoke({ retryAttempts: 0, onFailure: new SqsDestination(this.sweepDlq) });
      const rule = new events.Rule(this, `${pascal(name)}Schedule`, {
        description: `creditgate ${name}`,
        schedule: events.Schedule.expression(spec.schedule),
      });
      rule.addTarget(
        new targets.LambdaFunction(fn, {
          retryAttempts: 2,
          maxEventAge: Duration.minutes(10),
          deadLetterQueue: this.sweepDlq,
        }),
      );
      alarm(`${pascal(name)}NotRunningAlarm`, {
        alarmDescription: `creditgate ${name}: no run in the last 30 minutes (schedule ${spec.schedule})`,
        metric: fn.metricInvocations({ period: Duration.minutes(30), statistic: "Sum" }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      });
    }
    alarm("SweepDlqAlarm", {
      alarmDescription: "creditgate sweep: a scheduled run failed or could not be delivered (see the SweepDlq messages)",
      metric: this.sweepDlq.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: "Maximum" }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    alarm("SweepFailedAlarm", {
      alarmDescription: "creditgate sweep: accounts failed to grant or release (EMF SweepFailed; see the sweep's logs)",
      metric: new cloudwatch.Metric({
        namespace: METRICS_NAMESPACE,
        metricName: "SweepFailed",
        dimensionsMap: { service: SERVICE_NAME },
        statistic: "Sum",
        period: Duration.minutes(15),
      }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });

    /** Any occurrence of one of billing's EMF counts (lib/billing/metrics.ts, as the webhook writes it) alarms. */
    const anyBillingEvent = (id: string, metricName: string, alarmDescription: string) =>
      alarm(id, {
        alarmDescription,
        metric: new cloudwatch.Metric({
          namespace: METRICS_NAMESPACE,
          metricName,
          dimensionsMap: { service: SERVICE_NAME },
          statistic: "Sum",
          period: Duration.minutes(5),
        }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    // A user paying for two live subscriptions at once (lib/billing/subscription.ts logs which at
    // ERROR): someone must refund one.
    anyBillingEvent(
      "SecondLiveSubscriptionAlarm",
      BILLING_METRICS.secondLiveSubscription,
      "creditgate billing: a user has a second live Stripe subscription (pays twice); see the webhook's ERROR log 'second live subscription for one user' and refund or cancel one",
    );
    // A verified Stripe event that could not be applied was parked (lib/billing/parked.ts): money
    // or plan state waits on it (the ERROR log names the event and why).
    anyBillingEvent(
      "ParkedStripeEventsAlarm",
      BILLING_METRICS.parkedStripeEvents,
      "creditgate billing: a Stripe event was parked (not applied); see the webhook's ERROR log 'stripe event parked', fix the cause, then `npm run ops -- events replay --all`",
    );

    // ---- cdk-nag: what stays flagged on purpose, and why.
    for (const secret of this.secrets.values()) {
      if (secret instanceof secretsmanager.Secret) {
        acknowledge(secret, {
          id: "AwsSolutions-SMG4",
          reason:
            "Third-party credentials (Stripe keys, the webhook signing secret, the JWT secret shared with the issuer) are rotated at their source and then put here; no rotation Lambda can rotate them.",
        });
      }
    }

    new CfnOutput(this, "ApiUrl", { value: this.api.apiEndpoint, description: "HTTP API base URL (routes start with /v1)" });
    new CfnOutput(this, "TableName", { value: this.table.tableName });
    new CfnOutput(this, "AlarmTopicArn", { value: this.alarmTopic.topicArn, description: "subscribe to get alarms" });
    for (const [name, secret] of this.secrets) {
      new CfnOutput(this, `${pascal(name)}SecretArn`, { value: secret.secretArn, description: `put the ${name} value here` });
    }
  }
}
