import type { AccountCondition, AdmissionRule, AttributePath } from "./admission.js";
import type { ExpressionParts } from "./dynamo-expression.js";
import { accountPath } from "./dynamo-item.js";

/** An attribute path as expression placeholders, in stored names (dynamo-item.ts); keys chosen outside are named in their stored form. */
export function compilePath(parts: ExpressionParts, path: AttributePath): string {
  return accountPath(parts, ...path);
}

/** One condition (lib/ledger/admission.ts) as a DynamoDB condition expression. */
export function compileCondition(parts: ExpressionParts, condition: AccountCondition): string {
  switch (condition.kind) {
    case "exists":
      return `attribute_exists(${compilePath(parts, condition.path)})`;
    case "notExists":
      return `attribute_not_exists(${compilePath(parts, condition.path)})`;
    case "compare":
      return `${compilePath(parts, condition.path)} ${condition.operator} ${parts.value(condition.value)}`;
    case "sizeBelow":
      return `size(${compilePath(parts, condition.path)}) < ${parts.value(condition.limit)}`;
    case "either":
      return `(${condition.conditions.map((inner) => compileCondition(parts, inner)).join(" OR ")})`;
  }
}

/** Every rule must hold: the reserve's whole condition. */
export function compileRules(parts: ExpressionParts, rules: readonly AdmissionRule[]): string {
  return rules.map((rule) => compileCondition(parts, rule.condition)).join(" AND ");
}
