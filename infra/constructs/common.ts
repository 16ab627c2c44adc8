import { Validations } from "aws-cdk-lib";
import type { Construct } from "constructs";
import { METRICS_NAMESPACE } from "../../lib/metrics.js";
import { FUNCTIONS, type FunctionName, type FunctionSpec } from "../../lib/routes.js";

/**
 * What the parts of infra/constructs/ share. Each part adds its resources to the scope it is given
 * (the stack) with the ids they always had: a CloudFormation logical id is made from the construct
 * path, so wrapping a part in a Construct of its own would rename (replace) every resource in it,
 * the retained table included.
 */

/** Powertools service name (logs, EMF `service` dimension) of every function; alarms match on it. */
export const SERVICE_NAME = "creditgate";
/** EMF namespace the sweep (SweepFailed, SweepGranted…) and billing (SecondLiveSubscription) write to. */
export { METRICS_NAMESPACE };

/** "chatGate" → "ChatGate", "AUTH_JWT_SECRET" → "AuthJwtSecret" (construct ids). */
export const pascal = (name: string) =>
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
export function acknowledge(scope: Construct, finding: { id: string; reason: string }): void {
  if (finding.reason.trim().length < 20) throw new Error(`cdk-nag acknowledgment ${finding.id} needs a written reason`);
  Validations.of(scope).acknowledge(finding);
}

/** The chat proxy's construct id (lib/routes.ts PROXY_FUNCTION; infra/constructs/proxy.ts). */
export const PROXY_NAME = "chatProxy";
export type ProxyFunctionName = typeof PROXY_NAME;

/** Auto top-up's construct id (lib/routes.ts TOPUP_FUNCTION; infra/constructs/auto-top-up.ts). */
export const TOPUP_NAME = "autoTopUp";
export type TopUpFunctionName = typeof TOPUP_NAME;

/** The entries of lib/routes.ts FUNCTIONS, in their order. */
export const specs = () => Object.entries(FUNCTIONS) as [FunctionName, FunctionSpec][];
