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
    case "oneOf":
      if (condition.values.length === 0) throw new Error("oneOf needs at least one value"); // DynamoDB's IN () is no expression
      return `${compilePath(parts, condition.path)} IN (${condition.values.map((value) => parts.value(value)).join(", ")})`;
    case "noneOf":
      if (condition.values.length === 0) throw new Error("noneOf needs at least one value");
      return `NOT (${compilePath(parts, condition.path)} IN (${condition.values.map((value) => parts.value(value)).join(", ")}))`;
    case "either":
      return joined(parts, condition.conditions, "OR");
    case "all":
      return joined(parts, condition.conditions, "AND");
  }
}

/** Conditions joined in parentheses; one alone is itself (DynamoDB refuses redundant parentheses). */
function joined(parts: ExpressionParts, conditions: readonly AccountCondition[], operator: "OR" | "AND"): string {
  if (conditions.length === 0) throw new Error(`an empty ${operator} is no expression`);
  if (conditions.length === 1) return compileCondition(parts, conditions[0] as AccountCondition);
  return `(${conditions.map((inner) => compileCondition(parts, inner)).join(` ${operator} `)})`;
}

/** Every rule must hold: the reserve's whole condition. */
export function compileRules(parts: ExpressionParts, rules: readonly AdmissionRule[]): string {
  return rules.map((rule) => compileCondition(parts, rule.condition)).join(" AND ");
}
