import { ArnFormat, Duration, RemovalPolicy, Stack } from "aws-cdk-lib";
import * as cloudwatch from "aws-cdk-lib/aws-cloudwatch";
import { SnsAction } from "aws-cdk-lib/aws-cloudwatch-actions";
import * as iam from "aws-cdk-lib/aws-iam";
import * as kms from "aws-cdk-lib/aws-kms";
import * as sns from "aws-cdk-lib/aws-sns";
import * as subscriptions from "aws-cdk-lib/aws-sns-subscriptions";
import type * as sqs from "aws-cdk-lib/aws-sqs";
import type { Construct } from "constructs";
import { BILLING_METRICS } from "../../lib/billing/metrics.js";
import { PROXY_METRICS } from "../../lib/proxy/metrics.js";
import type { EventFunctionName, FunctionName } from "../../lib/routes.js";
import type { HouseFunction } from "../house-function.js";
import { METRICS_NAMESPACE, pascal, type ProxyFunctionName, SERVICE_NAME, type TopUpFunctionName } from "./common.js";
import type { WebhookRoute } from "./http-api.js";

/**
 * The alarm topic (ids "AlarmTopicKey", "AlarmTopic") and every CloudWatch alarm of the stack,
 * each one notifying the topic.
 */
export class Alarms {
  readonly topic: sns.Topic;
  private readonly action: SnsAction;

  constructor(
    private readonly scope: Construct,
    /** subscribed (email) to the alarm topic */
    alarmEmail?: string,
  ) {
    const stack = Stack.of(scope);
    // Encrypted with a key CloudWatch may use: the AWS-managed SNS key it may not.
    const key = new kms.Key(scope, "AlarmTopicKey", {
      description: "creditgate alarm topic",
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.DESTROY,
      pendingWindow: Duration.days(7),
    });
    key.addToResourcePolicy(
      new iam.PolicyStatement({
        principals: [new iam.ServicePrincipal("cloudwatch.amazonaws.com")],
        actions: ["kms:Decrypt", "kms:GenerateDataKey*"],
        resources: ["*"],
        conditions: { StringEquals: { "aws:SourceAccount": stack.account } },
      }),
    );
    this.topic = new sns.Topic(scope, "AlarmTopic", { masterKey: key, enforceSSL: true });
    // enforceSSL gives the topic a policy of its own, which replaces SNS's default (account-wide)
    // one: CloudWatch must be allowed explicitly, for this account's alarms only.
    this.topic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: "AllowCloudWatchAlarms",
        principals: [new iam.ServicePrincipal("cloudwatch.amazonaws.com")],
        actions: ["sns:Publish"],
        resources: [this.topic.topicArn],
        conditions: {
          StringEquals: { "aws:SourceAccount": stack.account },
          ArnLike: { "aws:SourceArn": stack.formatArn({ service: "cloudwatch", resource: "alarm", resourceName: "*", arnFormat: ArnFormat.COLON_RESOURCE_NAME }) },
        },
      }),
    );
    if (alarmEmail) this.topic.addSubscription(new subscriptions.EmailSubscription(alarmEmail));
    this.action = new SnsAction(this.topic);
  }

  /** An alarm (id `id`) that notifies the topic. */
  add(id: string, props: cloudwatch.AlarmProps): cloudwatch.Alarm {
    const created = new cloudwatch.Alarm(this.scope, id, props);
    created.addAlarmAction(this.action);
    return created;
  }

  /** Alarms when the metric reaches 1 in one period; no data is no alarm. */
  private whenAny(id: string, alarmDescription: string, metric: cloudwatch.IMetric): cloudwatch.Alarm {
    return this.add(id, {
      alarmDescription,
      metric,
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }

  /** A count of this service's EMF metric (lib/metrics namespace, `service` dimension). */
  private emfCount(metricName: string, period: Duration): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: METRICS_NAMESPACE,
      metricName,
      dimensionsMap: { service: SERVICE_NAME },
      statistic: "Sum",
      period,
    });
  }

  /** A function's "<Name>ErrorsAlarm" and "<Name>ThrottlesAlarm". */
  functionAlarms(name: FunctionName | EventFunctionName | ProxyFunctionName | TopUpFunctionName, { fn }: HouseFunction): void {
    this.whenAny(
      `${pascal(name)}ErrorsAlarm`,
      `creditgate ${name}: the function failed (unhandled error or timeout)`,
      fn.metricErrors({ period: Duration.minutes(5), statistic: "Sum" }),
    );
    this.whenAny(
      `${pascal(name)}ThrottlesAlarm`,
      `creditgate ${name}: invocations were throttled (account or function concurrency)`,
      fn.metricThrottles({ period: Duration.minutes(5), statistic: "Sum" }),
    );
  }

  /**
   * Webhook health: the share of Stripe deliveries we answered 5xx (handled 500s, timeouts,
   * crashes: all make Stripe retry). Lambda Errors alone miss handled 500s, so use the route's
   * API Gateway metrics.
   */
  webhookServerErrorRate({ apiId, stageName, method, resource }: WebhookRoute): void {
    const routeMetric = (metricName: string) =>
      new cloudwatch.Metric({
        namespace: "AWS/ApiGateway",
        metricName,
        dimensionsMap: { ApiId: apiId, Stage: stageName, Method: method, Resource: resource },
        statistic: "Sum",
        period: Duration.minutes(5),
      });
    this.add("WebhookServerErrorRateAlarm", {
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
  }

  /** A scheduled function that has not run for 30 minutes ("<Name>NotRunningAlarm"). */
  notRunning(name: FunctionName, fn: HouseFunction, schedule: string): void {
    this.add(`${pascal(name)}NotRunningAlarm`, {
      alarmDescription: `creditgate ${name}: no run in the last 30 minutes (schedule ${schedule})`,
      metric: fn.fn.metricInvocations({ period: Duration.minutes(30), statistic: "Sum" }),
      threshold: 1,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
  }

  /** The sweep: a run that failed or was not delivered (its DLQ), accounts it failed (EMF SweepFailed). */
  sweep(dlq: sqs.IQueue): void {
    this.whenAny(
      "SweepDlqAlarm",
      "creditgate sweep: a scheduled run failed or could not be delivered (see the SweepDlq messages)",
      dlq.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: "Maximum" }),
    );
    this.whenAny(
      "SweepFailedAlarm",
      "creditgate sweep: accounts failed to grant or release (EMF SweepFailed; see the sweep's logs)",
      this.emfCount("SweepFailed", Duration.minutes(15)),
    );
  }

  /** The chat proxy's money alarm (lib/proxy/metrics.ts): a finished call it could not charge. */
  proxySettles(): void {
    // The user got the answer and was not charged (the hold expires and the sweep releases it);
    // the operator still pays the provider. The ERROR log 'proxy settle failed' names the request.
    this.whenAny(
      "ProxySettleFailedAlarm",
      "creditgate chat proxy: a finished call could not be charged (its hold will expire uncharged); see the proxy's ERROR log 'proxy settle failed'",
      this.emfCount(PROXY_METRICS.settleFailed, Duration.minutes(5)),
    );
  }

  /** Any occurrence of one of billing's EMF counts (lib/billing/metrics.ts, as the webhook writes it) alarms. */
  billing(): void {
    // A user paying for two live subscriptions at once (lib/billing/subscription.ts logs which at
    // ERROR): someone must refund one.
    this.whenAny(
      "SecondLiveSubscriptionAlarm",
      "creditgate billing: a user has a second live Stripe subscription (pays twice); see the webhook's ERROR log 'second live subscription for one user' and refund or cancel one",
      this.emfCount(BILLING_METRICS.secondLiveSubscription, Duration.minutes(5)),
    );
    // A verified Stripe event that could not be applied was parked (lib/billing/parked.ts): money
    // or plan state waits on it (the ERROR log names the event and why).
    this.whenAny(
      "ParkedStripeEventsAlarm",
      "creditgate billing: a Stripe event was parked (not applied); see the webhook's ERROR log 'stripe event parked', fix the cause, then `npm run ops -- events replay --all`",
      this.emfCount(BILLING_METRICS.parkedStripeEvents, Duration.minutes(5)),
    );
  }

  /**
   * Auto top-up: a job that failed on every receive of TopUpQueue and was dead-lettered
   * (TopUpDlq): a user below their threshold was not topped up.
   */
  topUps(dlq: sqs.IQueue): void {
    this.whenAny(
      "TopUpDlqAlarm",
      "creditgate auto top-up: a job failed 10 times and is in TopUpDlq (a user was not topped up); see the autoTopUp function's logs, fix the cause, then redrive the DLQ to TopUpQueue (safe: the job resumes the same top-up under the same Stripe idempotency keys)",
      dlq.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: "Maximum" }),
    );
  }

  /**
   * Outgoing webhooks: an event given up on (WebhookDlq), a stream batch the consumer could not
   * process (WebhookStreamFailures), and a consumer falling behind the stream (its IteratorAge
   * above 5 minutes in 2 of 3 periods: events reach the app late, and past 24 hours are lost).
   */
  webhooks({ dlq, streamFailures, iteratorAge }: { dlq: sqs.IQueue; streamFailures: sqs.IQueue; iteratorAge: cloudwatch.IMetric }): void {
    this.whenAny(
      "WebhookDlqAlarm",
      "creditgate webhooks: events could not be delivered for 3 days and are in WebhookDlq; fix the endpoint, then `npm run ops -- webhooks failed` and `webhooks redrive --all`",
      dlq.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: "Maximum" }),
    );
    this.whenAny(
      "WebhookStreamFailuresAlarm",
      "creditgate webhooks: the stream consumer failed a batch after its retries; its stream position is in WebhookStreamFailures (see the consumer's logs)",
      streamFailures.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: "Maximum" }),
    );
    this.add("StreamConsumerIteratorAgeAlarm", {
      alarmDescription: "creditgate webhooks: the stream consumer is more than 5 minutes behind the table's stream",
      metric: iteratorAge,
      threshold: 5 * 60 * 1000,
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }
}
