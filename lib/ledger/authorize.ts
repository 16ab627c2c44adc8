import { randomBytes } from "node:crypto";
import type * as z from "zod/mini";
import type { Catalog, PlanId } from "../catalog.js";
import { ConflictError, InsufficientCreditsError, PlanRequiredError, RateLimitedError, ValidationError } from "../errors.js";
import { costOfCall, requireModel } from "../pricing.js";
import { type AccountRecord, holdRefOf } from "./account.js";
import type { LedgerDeps } from "./deps.js";
import { logger } from "../logger.js";
import { admissionRules, refusedRules } from "./admission.js";
import { ensureAccountOnce, newAccount } from "./ensure-account.js";
import { effectivePlan, type PlanAdmission, planAdmission, requiredPlanFor } from "./entitlements.js";
import { grantAllowanceIfDue } from "./grant.js";
import { encodeHoldId } from "./hold-id.js";
import { untilSettled } from "./retry.js";
import { shardOf } from "./schedule.js";
import { parseInput } from "../validation.js";
import { authorizeInputSchema } from "./validation.js";
import { ownValue } from "../own-keys.js";

export type AuthorizeInput = z.infer<typeof authorizeInputSchema>;

export interface AuthorizeResult {
  holdId: string;
  reserved: number;
  balance: number;
  available: number;
  plan: PlanId;
}

function resultFor(account: AccountRecord, requestId: string, catalog: Catalog): AuthorizeResult {
  const hold = ownValue(account.holds, requestId);
  if (!hold) throw new Error("hold missing from the account it was just written to");
  return {
    holdId: encodeHoldId(holdRefOf(account.userId, requestId, hold, account)),
    reserved: hold.reserved,
    balance: account.balance,
    available: account.available,
    plan: effectivePlan(catalog, account.plan),
  };
}

export interface AuthorizeOptions {
  /**
   * What a second authorize of an open hold's requestId gets: the gate API answers with the same
   * hold (a retried authorize is idempotent); the proxy refuses it with 409 REQUEST_IN_PROGRESS,
   * since its retry would run the LLM call a second time on the one hold.
   */
  openHold: "reuse" | "refuse";
}

/**
 * Reserves the most a chat can cost (input tokens + max output tokens at the model's rate) before
 * the LLM call. Steady state is one conditional UpdateItem whose condition is the admission rules
 * (lib/ledger/admission.ts). When it is refused, the same rules evaluated on the returned old item
 * say why, without another read.
 */
export async function authorizeChat(
  deps: LedgerDeps,
  input: AuthorizeInput,
  options: AuthorizeOptions = { openHold: "reuse" },
): Promise<AuthorizeResult> {
  const request = parseInput(authorizeInputSchema, input);
  const model = requireModel(request.model);
  const reserved = costOfCall(model, request.inputTokens, request.maxOutputTokens, "maxOutputTokens");
  const rateLimited = deps.authorizeRateLimitPerMinute > 0;
  const plans = planAdmission(deps.catalog, model, reserved, deps);
  // No plan could make this call: refused before any write, with nothing to upgrade to.
  if (requiredPlanFor(deps.catalog, model, reserved) === undefined) {
    throw new ValidationError(`maxOutputTokens: this call would reserve ${reserved} credits of ${model}, more than any plan allows in one call`, "maxOutputTokens");
  }
  /** the due grant time authorize already resolved: due again after that is a schedule bug, not a retry */
  let resolvedGrantAt: number | undefined;
  /** The answer to a refusal the caller must act on (upgrade, settle holds, buy credits). */
  function refusal(rule: "planIncludesModel" | "planAllowsReservation" | "underHoldCap" | "affordable", account: AccountRecord) {
    switch (rule) {
      case "planIncludesModel":
      case "planAllowsReservation":
        return new PlanRequiredError({
          model,
          plan: effectivePlan(deps.catalog, account.plan),
          requiredPlan: requiredPlanFor(deps.catalog, model, reserved) as PlanId,
          reason: rule === "planIncludesModel" ? "MODEL_NOT_IN_PLAN" : "RESERVATION_OVER_PLAN_LIMIT",
          reserved,
        });
      case "underHoldCap": {
        const cap = holdCapOf(plans, effectivePlan(deps.catalog, account.plan));
        return new ConflictError(`Too many open holds (${cap}); settle or release some first`, "CONFLICT", { reason: "TOO_MANY_OPEN_HOLDS" });
      }
      case "affordable":
        return new InsufficientCreditsError(reserved, account.balance, account.available);
    }
  }

  return untilSettled(async () => {
    const now = deps.now();
    const minute = Math.floor(now / 60_000);
    const rules = admissionRules({ requestId: request.requestId, reserved, now, minute, plans });
    const outcome = await deps.store.reserve({
      userId: request.userId,
      requestId: request.requestId,
      hold: { reserved, model, createdAt: now, expiresAt: now + deps.holdTtlMs, tag: randomBytes(9).toString("base64url") },
      holdShard: shardOf(request.userId),
      rules,
      ...(rateLimited ? { rateCounterMinute: minute } : {}),
    });
    if (outcome.kind === "reserved") return resultFor(outcome.account, request.requestId, deps.catalog);
    const account = outcome.account;
    const [refused] = refusedRules(rules, account);
    switch (refused) {
      case "accountExists": {
        // First sight: the account it would create (free plan, the signup bonus) is judged by the
        // same rules, so a call it could not make is refused before creating anything (a 4xx writes
        // nothing; GET /v1/credits previews the same).
        const prospective = newAccount(deps, request.userId, now).account;
        const [wouldRefuse] = refusedRules(rules, prospective);
        if (wouldRefuse === "planIncludesModel" || wouldRefuse === "planAllowsReservation" || wouldRefuse === "underHoldCap" || wouldRefuse === "affordable") {
          throw refusal(wouldRefuse, prospective);
        }
        await ensureAccountOnce(deps, request.userId); // a transient failure retries with the loop
        return undefined;
      }
      case "hasNoSuchHold": {
        const existing = ownValue(account?.holds, request.requestId);
        if (options.openHold === "refuse") {
          throw new ConflictError("A request with this id is still in progress", "REQUEST_IN_PROGRESS", { field: "requestId" });
        }
        if (existing?.model !== model || existing.reserved !== reserved) {
          throw new ConflictError("requestId was already used for a different request", "CONFLICT", { field: "requestId" });
        }
        return resultFor(account as AccountRecord, request.requestId, deps.catalog);
      }
      case "noGrantDue": {
        const dueAt = account?.nextGrantAt;
        if (dueAt === resolvedGrantAt) throw scheduleStuck(request.userId, dueAt, now);
        resolvedGrantAt = dueAt;
        // Grant what is due (or repair a schedule with nothing left to grant), then admit.
        await grantAllowanceIfDue(deps, request.userId);
        return undefined;
      }
      case "planIncludesModel":
      case "planAllowsReservation":
      case "underHoldCap":
      case "affordable":
        throw refusal(refused, account as AccountRecord);
      case "underRateLimit":
        throw new RateLimitedError(60 - Math.floor((now % 60_000) / 1000));
      case undefined:
        // The write's condition is these rules compiled: a refusal none of them explains means the
        // two disagree. A retry would loop on it; say so loudly instead.
        logger.error("authorize refused by a condition no admission rule explains", {
          userId: request.userId,
          rules: rules.map((rule) => rule.name),
          account: account && { seq: account.seq, available: account.available, nextGrantAt: account.nextGrantAt },
        });
        throw new Error("authorize refused by a condition no admission rule explains");
    }
  });
}

/** A grant was due, authorize had it granted, and it is due again at the same time: the schedule is stuck. */
function scheduleStuck(userId: string, dueAt: number | undefined, now: number): Error {
  logger.error("allowance schedule still due after its grant was resolved", { userId, nextGrantAt: dueAt, now });
  return new Error("allowance schedule still due after its grant was resolved");
}

/** The open-hold cap of `plan` as this call's rules enforce it. */
function holdCapOf(plans: PlanAdmission, plan: string): number | undefined {
  return plans.holdCaps.find((group) => group.plans.includes(plan))?.limit;
}
