import { randomBytes } from "node:crypto";
import * as z from "zod/mini";
import "../zod-locale.js";
import type { PlanId } from "../catalog.js";
import { ConflictError, InsufficientCreditsError, RateLimitedError } from "../errors.js";
import { costOfCall, requireModel } from "../pricing.js";
import type { AccountRecord } from "./account.js";
import type { LedgerDeps } from "./deps.js";
import { ensureAccountOnce } from "./ensure-account.js";
import { grantAllowanceIfDue } from "./grant.js";
import { encodeHoldId } from "./hold-id.js";
import { untilSettled } from "./retry.js";
import { shardOf } from "./schedule.js";
import { parseInput, requestIdSchema, userIdSchema } from "./validation.js";
import { ownValue } from "../own-keys.js";

const authorizeSchema = z.object({
  userId: userIdSchema,
  requestId: requestIdSchema,
  model: z.string().check(z.minLength(1), z.maxLength(100)),
  inputTokens: z.number(),
  maxOutputTokens: z.number(),
});
export type AuthorizeInput = z.infer<typeof authorizeSchema>;

export interface AuthorizeResult {
  holdId: string;
  reserved: number;
  balance: number;
  available: number;
  plan: PlanId;
}

function resultFor(account: AccountRecord, requestId: string): AuthorizeResult {
  const hold = ownValue(account.holds, requestId);
  if (!hold) throw new Error("hold missing from the account it was just written to");
  return {
    holdId: encodeHoldId({
      userId: account.userId,
      requestId,
      tag: hold.t,
      seq: ownValue(account.holdSeq, requestId) ?? 0,
      balance: ownValue(account.holdBal, requestId) ?? 0,
      model: hold.m,
      reserved: hold.a,
    }),
    reserved: hold.a,
    balance: account.balance,
    available: account.available,
    plan: account.plan,
  };
}

/**
 * Reserves the most a chat can cost (input tokens + max output tokens at the model's rate) before
 * the LLM call. Steady state is one conditional UpdateItem: admission (`available >= cost`), the
 * idempotent hold (keyed by requestId), the schedule check and the rate limit are all conditions
 * of that one write. When it is refused, the returned old item tells us why, without another read.
 */
export async function authorizeChat(deps: LedgerDeps, input: AuthorizeInput): Promise<AuthorizeResult> {
  const request = parseInput(authorizeSchema, input);
  const model = requireModel(request.model);
  const reserved = costOfCall(model, request.inputTokens, request.maxOutputTokens, "maxOutputTokens");
  return untilSettled(async () => {
    const now = deps.now();
    const minute = Math.floor(now / 60_000);
    const outcome = await deps.store.reserve({
      userId: request.userId,
      requestId: request.requestId,
      hold: { a: reserved, m: model, c: now, e: now + deps.holdTtlMs, t: randomBytes(9).toString("base64url") },
      now,
      maxOpenHolds: deps.maxOpenHolds,
      holdShard: shardOf(request.userId),
      ...(deps.authorizeRateLimitPerMinute > 0
        ? { rateLimit: { minute, limit: deps.authorizeRateLimitPerMinute } }
        : {}),
    });
    if (outcome.kind === "reserved") return resultFor(outcome.account, request.requestId);
    const account = outcome.account;
    if (!account) {
      // First sight: a new account holds exactly the signup bonus, so a call it cannot afford is
      // refused before creating anything (a 4xx writes nothing; GET /v1/credits previews the same).
      const bonus = deps.catalog.signupBonus;
      if (reserved > bonus) throw new InsufficientCreditsError(reserved, bonus, bonus);
      await ensureAccountOnce(deps, request.userId); // a transient failure retries with the loop
      return undefined;
    }
    const existing = ownValue(account.holds, request.requestId);
    if (existing) {
      if (existing.m !== model || existing.a !== reserved) {
        throw new ConflictError("requestId was already used for a different request", "CONFLICT", {
          field: "requestId",
        });
      }
      return resultFor(account, request.requestId);
    }
    if (account.nextGrantAt !== undefined && account.nextGrantAt <= now) {
      // The write was refused because the schedule says a grant is due: grant it (or repair a
      // schedule that has nothing due), then admit.
      await grantAllowanceIfDue(deps, request.userId);
      return undefined;
    }
    if ((ownValue(account.rl, String(minute)) ?? 0) >= deps.authorizeRateLimitPerMinute && deps.authorizeRateLimitPerMinute > 0) {
      throw new RateLimitedError(60 - Math.floor((now % 60_000) / 1000));
    }
    if (Object.keys(account.holds).length >= deps.maxOpenHolds) {
      throw new ConflictError(`Too many open holds (${deps.maxOpenHolds}); settle or release some first`, "CONFLICT", {
        reason: "TOO_MANY_OPEN_HOLDS",
      });
    }
    if (account.available < reserved) {
      throw new InsufficientCreditsError(reserved, account.balance, account.available);
    }
    return undefined; // the account changed between the write and its check: go again
  });
}
