import { periodStart } from "../periods.js";
import type { AccountRecord, LedgerEntry } from "./account.js";
import type { LedgerDeps } from "./deps.js";
import { untilSettled } from "./retry.js";
import { freeCadence, shardOf } from "./schedule.js";
import { parseInput } from "../validation.js";
import { userIdSchema } from "./validation.js";
import { emptyMap } from "../own-keys.js";

/**
 * First sight of a user: creates the account with the signup bonus (`signup` entry) on the free
 * plan, its allowance periods anchored at creation. The first free allowance is due one period
 * later, so signup never grants twice. Idempotent: the account is created at most once, so
 * transient failures (throttling, a conflict with a concurrent creation) are simply retried.
 */
export async function ensureAccount(deps: LedgerDeps, userIdInput: string): Promise<AccountRecord> {
  const userId = parseInput(userIdSchema, userIdInput, "userId");
  return untilSettled(() => ensureAccountOnce(deps, userId));
}

/**
 * One attempt of `ensureAccount` for a validated user id; transient failures propagate. Writers
 * call it inside their own retry loop, so a first-sight write retries the creation with the fact.
 */
export async function ensureAccountOnce(deps: LedgerDeps, userId: string): Promise<AccountRecord> {
  const existing = await deps.store.getAccount(userId);
  if (existing) return existing;
  const { account, signup } = newAccount(deps, userId, deps.now());
  const created = await deps.store.createAccount(account, [signup]);
  if (created) return account;
  const winner = await deps.store.getAccount(userId);
  if (!winner) throw new Error(`account ${userId} vanished right after a concurrent create`);
  return winner;
}

/** The account a user gets on first sight, and its `signup` entry (not yet written). */
export function newAccount(deps: Pick<LedgerDeps, "catalog">, userId: string, now: number): { account: AccountRecord; signup: LedgerEntry } {
  const bonus = deps.catalog.signupBonus;
  const account: AccountRecord = {
    userId,
    plan: "free",
    interval: "month",
    createdAt: now,
    balance: bonus,
    available: bonus,
    seq: 1,
    allowanceBase: bonus,
    purchasedBase: 0,
    spent: 0,
    holds: emptyMap(),
    holdSeq: emptyMap(),
    holdBalance: emptyMap(),
    outbox: emptyMap(),
    outboxSeq: emptyMap(),
    outboxBalance: emptyMap(),
    periodIndex: 0,
    periodAnchor: now,
    nextGrantAt: periodStart(now, 1, freeCadence(deps.catalog)),
    grantShard: shardOf(userId),
    rateCounters: emptyMap(),
  };
  const signup: LedgerEntry = {
    userId,
    key: "signup",
    amount: bonus,
    balanceAfter: bonus,
    seq: 1,
    reason: "signup",
    bucket: "allowance",
    refs: {},
    createdAt: now,
  };
  return { account, signup };
}
