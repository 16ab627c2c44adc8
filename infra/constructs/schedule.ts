import { Duration } from "aws-cdk-lib";
import * as events from "aws-cdk-lib/aws-events";
import * as targets from "aws-cdk-lib/aws-events-targets";
import { SqsDestination } from "aws-cdk-lib/aws-lambda-destinations";
import * as sqs from "aws-cdk-lib/aws-sqs";
import type { Construct } from "constructs";
import type { FunctionName } from "../../lib/routes.js";
import type { HouseFunction } from "../house-function.js";
import { acknowledge, pascal, specs } from "./common.js";

export interface Schedules {
  /** where failed deliveries and failed runs land ("SweepDlq") */
  dlq: sqs.Queue;
  /** the functions lib/routes.ts runs on a schedule, with their schedule expressions */
  scheduled: { name: FunctionName; fn: HouseFunction; schedule: string }[];
}

/**
 * EventBridge → Lambda, one rule ("<Name>Schedule") per scheduled entry of lib/routes.ts; failed
 * deliveries and failed runs land in one DLQ.
 */
export function addSchedules(scope: Construct, functions: Record<FunctionName, HouseFunction>): Schedules {
  const dlq = new sqs.Queue(scope, "SweepDlq", {
    encryption: sqs.QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
    retentionPeriod: Duration.days(14),
  });
  acknowledge(dlq, {
    id: "AwsSolutions-SQS3",
    reason: "This queue is itself the dead-letter queue of the scheduled sweep (EventBridge target DLQ and Lambda on-failure destination).",
  });
  const scheduled: Schedules["scheduled"] = [];
  for (const [name, spec] of specs()) {
    if (!spec.schedule) continue;
    const fn = functions[name].fn;
    // The schedule is the retry: a failed run's work stays due in the index for the next run,
    // so Lambda does not retry (no overlapping runs); the failed event goes to the DLQ.
    fn.configureAsyncInvoke({ retryAttempts: 0, onFailure: new SqsDestination(dlq) });
    const rule = new events.Rule(scope, `${pascal(name)}Schedule`, {
      description: `creditgate ${name}`,
      schedule: events.Schedule.expression(spec.schedule),
    });
    rule.addTarget(
      new targets.LambdaFunction(fn, {
        retryAttempts: 2,
        maxEventAge: Duration.minutes(10),
        deadLetterQueue: dlq,
      }),
    );
    scheduled.push({ name, fn: functions[name], schedule: spec.schedule });
  }
  return { dlq, scheduled };
}
