import { createRequire } from "node:module";
import { type Duration, RemovalPolicy } from "aws-cdk-lib";
import * as iam from "aws-cdk-lib/aws-iam";
import * as lambda from "aws-cdk-lib/aws-lambda";
import { type BundlingOptions, NodejsFunction, OutputFormat } from "aws-cdk-lib/aws-lambda-nodejs";
import * as logs from "aws-cdk-lib/aws-logs";
import { Construct } from "constructs";
import { LAMBDA_ESBUILD_OPTIONS } from "./bundling.js";

/** infra/bundling.ts's esbuild options in NodejsFunction's vocabulary (one source for both). */
export function nodejsBundling(): BundlingOptions {
  const o = LAMBDA_ESBUILD_OPTIONS;
  return {
    format: o.format === "esm" ? OutputFormat.ESM : OutputFormat.CJS,
    target: o.target,
    minify: o.minify,
    sourceMap: o.sourcemap,
    mainFields: [...o.mainFields],
    banner: o.banner.js,
    externalModules: [...o.external],
    forceDockerBundling: false,
  };
}

let esbuildChecked = false;

/**
 * NodejsFunction silently switches to Docker (and even builds an image while the construct is
 * created) when it cannot find esbuild. We never bundle in Docker: fail with a clear message instead.
 */
export function assertLocalEsbuild(): void {
  if (esbuildChecked) return;
  try {
    createRequire(import.meta.url).resolve("esbuild");
  } catch {
    throw new Error("esbuild is not installed: run `npm ci` (bundling is local only, never in Docker)");
  }
  esbuildChecked = true;
}

export interface HouseFunctionProps {
  /** handler file (absolute, or relative to the project root); it exports `handler` */
  entry: string;
  description: string;
  timeout: Duration;
  memorySize: number;
  environment: Record<string, string>;
  logRetention: logs.RetentionDays;
  /** where package-lock.json lives; defaults to the CDK's lookup from the working directory */
  projectRoot?: string;
  depsLockFilePath?: string;
}

/**
 * The house defaults for every Lambda: nodejs24.x on arm64, one ESM bundle built by local esbuild,
 * an explicit log group with retention, and its own role that may write only to that log group
 * (no AWSLambdaBasicExecutionRole, which allows creating and writing any log group).
 */
export class HouseFunction extends Construct {
  readonly fn: NodejsFunction;
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: HouseFunctionProps) {
    super(scope, id);
    assertLocalEsbuild();
    this.logGroup = new logs.LogGroup(this, "Logs", {
      retention: props.logRetention,
      // Logs are operational data: they go with the stack (the table is what must survive).
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.role = new iam.Role(this, "Role", {
      assumedBy: new iam.ServicePrincipal("lambda.amazonaws.com"),
      description: `${id}: ${props.description}`,
    });
    this.logGroup.grant(this.role, "logs:CreateLogStream", "logs:PutLogEvents");
    this.fn = new NodejsFunction(this, "Function", {
      entry: props.entry,
      handler: "handler",
      description: props.description,
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: props.memorySize,
      timeout: props.timeout,
      role: this.role,
      logGroup: this.logGroup,
      environment: {
        NODE_OPTIONS: "--enable-source-maps",
        ...props.environment,
      },
      bundling: nodejsBundling(),
      ...(props.projectRoot ? { projectRoot: props.projectRoot } : {}),
      ...(props.depsLockFilePath ? { depsLockFilePath: props.depsLockFilePath } : {}),
    });
  }
}
