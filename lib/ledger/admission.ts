import { ownValue } from "../own-keys.js";
import type { AccountRecord } from "./account.js";
import { FALLBACK_PLAN, type PlanAdmission, type PlanGroup } from "./entitlements.js";

/**
 * The admission rules of authorize, each written once, by name, as data. The DynamoDB adapter
 * compiles them into the reserve's one condition expression (lib/ledger/dynamo-conditions.ts);
 * when DynamoDB refuses the write, `refusedRules` evaluates the same rules on the item it
 * returned, so the diagnosis of a refusal can never disagree with the condition that refused.
 */

/** One step of an attribute path: a field name, or a key chosen outside (stored encoded). */
export type PathStep = string | { key: string };
/** A path into the account, in the model's names: a field of it, then keys and fields inside (the adapter stores them under its own names). */
export type AttributePath = readonly [keyof AccountRecord, ...PathStep[]];

/** A condition on the account item, with DynamoDB's semantics (a missing attribute compares false). */
export type AccountCondition =
  | { kind: "exists"; path: AttributePath }
  | { kind: "notExists"; path: AttributePath }
  | { kind: "compare"; path: AttributePath; operator: "<" | "<=" | ">" | ">=" | "="; value: number }
  | { kind: "sizeBelow"; path: AttributePath; limit: number }
  /** a string attribute equal to one of `values` (DynamoDB's IN; never empty) */
  | { kind: "oneOf"; path: AttributePath; values: readonly string[] }
  /** the attribute is missing or none of `values` (DynamoDB's NOT … IN) */
  | { kind: "noneOf"; path: AttributePath; values: readonly string[] }
  | { kind: "either"; conditions: readonly AccountCondition[] }
  | { kind: "all"; conditions: readonly AccountCondition[] };

export type AdmissionRuleName =
  | "accountExists"
  | "hasNoSuchHold"
  | "noGrantDue"
  | "planIncludesModel"
  | "planAllowsReservation"
  | "underRateLimit"
  | "underHoldCap"
  | "affordable";

export interface AdmissionRule {
  name: AdmissionRuleName;
  condition: AccountCondition;
}

export interface AdmissionRequest {
  requestId: string;
  /** credits the hold reserves */
  reserved: number;
  now: number;
  /** the minute the rate counter counts in */
  minute: number;
  /** what each plan allows for this call (lib/ledger/entitlements.ts planAdmission) */
  plans: PlanAdmission;
}

/**
 * The account is served as one of `plans`: its stored plan is one of them, or — when they include
 * the fallback plan — its stored plan is none the catalog has (effectivePlan, lib/ledger/entitlements.ts).
 */
function planIsOneOf(plans: readonly string[], catalogPlans: readonly string[]): AccountCondition {
  const stored: AccountCondition = { kind: "oneOf", path: ["plan"], values: plans };
  if (!plans.includes(FALLBACK_PLAN)) return stored;
  return { kind: "either", conditions: [stored, { kind: "noneOf", path: ["plan"], values: catalogPlans }] };
}

/** For whichever plan the account is served as, `within(limit)` holds with that plan's limit. */
const underPlanLimit = (groups: readonly PlanGroup[], catalogPlans: readonly string[], within: (limit: number) => AccountCondition): AccountCondition => ({
  kind: "either",
  conditions: groups.map((group) => ({ kind: "all", conditions: [planIsOneOf(group.plans, catalogPlans), within(group.limit)] })),
});

/**
 * The rules in the order a refusal is diagnosed: an existing hold first (a retry is answered
 * with it), then what authorize can resolve by itself (a grant due), then what it answers.
 */
export function admissionRules(request: AdmissionRequest): AdmissionRule[] {
  const rules: AdmissionRule[] = [
    // every account item carries its userId; the item is absent on a user's first call
    { name: "accountExists", condition: { kind: "exists", path: ["userId"] } },
    { name: "hasNoSuchHold", condition: { kind: "notExists", path: ["holds", { key: request.requestId }] } },
    {
      name: "noGrantDue",
      condition: {
        kind: "either",
        conditions: [
          { kind: "notExists", path: ["nextGrantAt"] },
          { kind: "compare", path: ["nextGrantAt"], operator: ">", value: request.now },
        ],
      },
    },
  ];
  // the plan's entitlements, read where the write lands: a plan change is in force from its own write on
  rules.push(
    { name: "planIncludesModel", condition: planIsOneOf(request.plans.includingModel, request.plans.catalogPlans) },
    { name: "planAllowsReservation", condition: planIsOneOf(request.plans.allowingReservation, request.plans.catalogPlans) },
  );
  if (request.plans.rateLimits) {
    const counter: AttributePath = ["rateCounters", String(request.minute)];
    rules.push({
      name: "underRateLimit",
      condition: {
        kind: "either",
        conditions: [
          { kind: "notExists", path: counter },
          underPlanLimit(request.plans.rateLimits, request.plans.catalogPlans, (limit) => ({ kind: "compare", path: counter, operator: "<", value: limit })),
        ],
      },
    });
  }
  rules.push(
    { name: "underHoldCap", condition: underPlanLimit(request.plans.holdCaps, request.plans.catalogPlans, (limit) => ({ kind: "sizeBelow", path: ["holds"], limit })) },
    { name: "affordable", condition: { kind: "compare", path: ["available"], operator: ">=", value: request.reserved } },
  );
  return rules;
}

function valueAt(account: AccountRecord | undefined, path: AttributePath): unknown {
  let current: unknown = account;
  for (const step of path) {
    if (current === null || typeof current !== "object") return undefined;
    current = ownValue(current as Record<string, unknown>, typeof step === "string" ? step : step.key);
  }
  return current;
}

function sizeOf(value: unknown): number | undefined {
  if (typeof value === "string" || Array.isArray(value)) return value.length;
  if (value !== null && typeof value === "object") return Object.keys(value).length;
  return undefined;
}

const COMPARE = {
  "<": (a: number, b: number) => a < b,
  "<=": (a: number, b: number) => a <= b,
  ">": (a: number, b: number) => a > b,
  ">=": (a: number, b: number) => a >= b,
  "=": (a: number, b: number) => a === b,
} as const;

/** Whether `account` (undefined: no item) satisfies the condition, as DynamoDB would decide. */
export function holdsFor(condition: AccountCondition, account: AccountRecord | undefined): boolean {
  switch (condition.kind) {
    case "exists":
      return valueAt(account, condition.path) !== undefined;
    case "notExists":
      return valueAt(account, condition.path) === undefined;
    case "compare": {
      const value = valueAt(account, condition.path);
      return typeof value === "number" && COMPARE[condition.operator](value, condition.value);
    }
    case "sizeBelow": {
      const size = sizeOf(valueAt(account, condition.path));
      return size !== undefined && size < condition.limit;
    }
    case "oneOf": {
      const value = valueAt(account, condition.path);
      return typeof value === "string" && condition.values.includes(value);
    }
    case "noneOf": {
      const value = valueAt(account, condition.path);
      return !(typeof value === "string" && condition.values.includes(value));
    }
    case "either":
      return condition.conditions.some((inner) => holdsFor(inner, account));
    case "all":
      return condition.conditions.every((inner) => holdsFor(inner, account));
  }
}

/** The rules `account` breaks, in diagnosis order; empty when it would be admitted. */
export function refusedRules(rules: readonly AdmissionRule[], account: AccountRecord | undefined): AdmissionRuleName[] {
  return rules.filter((rule) => !holdsFor(rule.condition, account)).map((rule) => rule.name);
}
