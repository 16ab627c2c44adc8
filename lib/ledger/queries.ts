import * as z from "zod/mini";
import "../zod-locale.js";
import { type BillingInterval, type PlanId, planOf } from "../catalog.js";
import { ValidationError } from "../errors.js";
import { type AccountRecord, heldOf, type LedgerEntry, outboxEntries, type SubscriptionState } from "./account.js";
import { splitOf } from "./split.js";
import type { LedgerDeps } from "./deps.js";
import { ensureAccount, newAccount } from "./ensure-account.js";
import { effectivePlan, type EntitlementsView, entitlementsView } from "./entitlements.js";
import { parseInput } from "../validation.js";
import { userIdSchema } from "./validation.js";

export interface BalanceView {
  userId: string;
  plan: PlanId;
  interval: BillingInterval;
  balance: number;
  available: number;
  held: number;
  allowance: number;
  purchased: number;
  monthlyAllowance: number;
  nextGrantAt: string | null;
  subscription: (Omit<SubscriptionState, "periodStart" | "periodEnd" | "lastEventAt"> & {
    periodStart: string;
    periodEnd: string;
  }) | null;
  paymentFailedAt: string | null;
  /** what the account's plan includes, capped by the operator's limits (docs/entitlements.md) */
  entitlements: EntitlementsView;
}

/** The ledger settings a balance view reads: the catalog, and the operator's caps over every plan's limits. */
export type BalanceViewDeps = Pick<LedgerDeps, "catalog" | "maxOpenHolds" | "authorizeRateLimitPerMinute">;

export function balanceView(account: AccountRecord, deps: BalanceViewDeps): BalanceView {
  const catalog = deps.catalog;
  const split = splitOf(account);
  const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());
  const subscription = account.subscription;
  return {
    userId: account.userId,
    // a plan the catalog does not have (retired, missing) is served as free, as authorize serves it
    plan: effectivePlan(catalog, account.plan),
    interval: account.interval,
    balance: account.balance,
    available: account.available,
    held: heldOf(account),
    allowance: split.allowance,
    purchased: split.purchased,
    monthlyAllowance: planOf(effectivePlan(catalog, account.plan), catalog).monthlyAllowance,
    nextGrantAt: iso(account.nextGrantAt),
    subscription: subscription
      ? {
          id: subscription.id,
          status: subscription.status,
          priceId: subscription.priceId,
          cancelAtPeriodEnd: subscription.cancelAtPeriodEnd,
          periodStart: new Date(subscription.periodStart).toISOString(),
          periodEnd: new Date(subscription.periodEnd).toISOString(),
        }
      : null,
    paymentFailedAt: iso(account.paymentFailedAt),
    entitlements: entitlementsView(catalog, account.plan, deps),
  };
}

/** The account's balances. First sight of a user creates the account (signup bonus). */
export async function getBalance(deps: LedgerDeps, userId: string): Promise<BalanceView> {
  return balanceView(await ensureAccount(deps, userId), deps);
}

/**
 * The account's balances without writing anything: a user never seen before gets the view of the
 * account they will have on first use (the signup bonus, periods from now). This lets the credits
 * function run with read-only table access; the account itself is created by the first write path
 * (authorize, checkout, a webhook).
 */
export async function peekBalance(deps: LedgerDeps, userIdInput: string): Promise<BalanceView> {
  const userId = parseInput(userIdSchema, userIdInput, "userId");
  const account = (await deps.store.getAccount(userId)) ?? newAccount(deps, userId, deps.now()).account;
  return balanceView(account, deps);
}

export interface HistoryEntry {
  key: string;
  amount: number;
  balanceAfter: number;
  reason: string;
  createdAt: string;
  refs: Record<string, string | number>;
}

const historySchema = z.object({
  userId: userIdSchema,
  limit: z._default(z.number().check(z.int(), z.minimum(1), z.maximum(100)), 20),
  cursor: z.optional(z.string().check(z.maxLength(64))),
});

/** Cursors are opaque to callers; inside they name the seq to continue below. */
const encodeCursor = (seq: number) => Buffer.from(`s${seq}`).toString("base64url");
function decodeCursor(cursor: string): number {
  const match = /^s(\d{1,15})$/.exec(Buffer.from(cursor, "base64url").toString("utf8"));
  if (!match) throw new ValidationError("cursor is not one this API returned", "cursor");
  return Number(match[1]);
}

/** Ledger entries newest first (the order they were applied), in cursor pages. */
export async function listHistory(
  deps: LedgerDeps,
  input: { userId: string; limit?: number; cursor?: string },
): Promise<{ entries: HistoryEntry[]; nextCursor: string | null }> {
  const request = parseInput(historySchema, input);
  const beforeSeq = request.cursor === undefined ? undefined : decodeCursor(request.cursor);
  const entries = await deps.store.listEntries(request.userId, {
    limit: request.limit,
    ...(beforeSeq === undefined ? {} : { beforeSeq }),
  });
  const last = entries.at(-1);
  return {
    entries: entries.map((entry) => ({
      key: entry.key,
      amount: entry.amount,
      balanceAfter: entry.balanceAfter,
      reason: entry.reason,
      createdAt: new Date(entry.createdAt).toISOString(),
      refs: entry.refs,
    })),
    // seq is gap-free from 1, so a full page that did not reach seq 1 has more behind it.
    nextCursor: last && entries.length === request.limit && last.seq > 1 ? encodeCursor(last.seq) : null,
  };
}

export interface AuditReport {
  userId: string;
  ok: boolean;
  balance: number;
  ledgerSum: number;
  drift: number;
  entries: number;
  problems: string[];
}

/**
 * Recomputes an account from its ledger and reports every disagreement: balance vs the sum of
 * entries (docs/invariants.md, invariant 1), the seq/balanceAfter chain, held vs open holds, and the bucket split.
 */
export async function auditAccount(deps: LedgerDeps, userIdInput: string): Promise<AuditReport> {
  const userId = parseInput(userIdSchema, userIdInput, "userId");
  const account = await deps.store.getAccount(userId);
  // Entries still in the outbox (applied, not yet written out) are part of the ledger too.
  const written = await deps.store.allEntries(userId);
  const waiting = account ? outboxEntries(account).filter((entry) => !written.some((w) => w.key === entry.key)) : [];
  const entries: LedgerEntry[] = [...written, ...waiting].sort((a, b) => a.seq - b.seq);
  const problems: string[] = [];
  let running = 0;
  entries.forEach((entry, index) => {
    running += entry.amount;
    if (entry.seq !== index + 1) problems.push(`entry ${entry.key} has seq ${entry.seq}, expected ${index + 1}`);
    if (entry.balanceAfter !== running) {
      problems.push(`entry ${entry.key} says balanceAfter ${entry.balanceAfter}, ledger gives ${running}`);
    }
  });
  if (!account) {
    if (entries.length) problems.push("ledger entries exist for an account that does not");
    return { userId, ok: problems.length === 0, balance: 0, ledgerSum: running, drift: -running, entries: entries.length, problems };
  }
  if (account.balance !== running) problems.push(`balance ${account.balance} != ledger sum ${running}`);
  if (account.seq !== entries.length) problems.push(`seq ${account.seq} != ${entries.length} entries`);
  const heldByHolds = Object.values(account.holds).reduce((sum, hold) => sum + hold.reserved, 0);
  if (heldOf(account) !== heldByHolds) problems.push(`held ${heldOf(account)} != open holds ${heldByHolds}`);
  const split = splitOf(account);
  if (split.allowance + split.purchased !== account.balance) problems.push("allowance + purchased != balance");
  if (split.purchased < 0) problems.push(`purchased is negative (${split.purchased})`);
  return {
    userId,
    ok: problems.length === 0,
    balance: account.balance,
    ledgerSum: running,
    drift: account.balance - running,
    entries: entries.length,
    problems,
  };
}
