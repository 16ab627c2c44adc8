import { Annotations, App, Validations } from "aws-cdk-lib";
import { AwsSolutionsChecks } from "cdk-nag";
import { stackPropsFromContext } from "./context.js";
import { CreditgateStack } from "./stack.js";

/**
 * The CDK app (cdk.json: `npx tsx infra/app.ts`). One stack; configuration comes from context
 * (`-c appUrl=…`, see infra/context.ts and docs/deploy.md). cdk-nag's AwsSolutions
 * pack runs on every synth as a CDK validation plugin (cdk-nag v3): any unacknowledged finding,
 * error or warning, fails the synth and is written to the cloud assembly's policy-validation report.
 */
const app = new App();
const { props, warnings } = stackPropsFromContext((key) => app.node.tryGetContext(key));
const stack = new CreditgateStack(app, String(app.node.tryGetContext("stackName") ?? "Creditgate"), {
  ...props,
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
for (const warning of warnings) Annotations.of(stack).addWarningV2("creditgate:context", warning);
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
app.synth();
