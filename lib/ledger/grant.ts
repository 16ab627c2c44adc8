import * as z from "zod/mini";
import "../zod-locale.js";
import { planOf } from "../catalog.js";
import { InsufficientCreditsError, ValidationError } from "../errors.js";
import { logger } from "../logger.js";
import type { AccountRecord, LedgerEntry } from "./account.js";
import { splitOf } from "./split.js";
import { type CreditFact, commitForFacts, type FactResult, resolveFactCommit } from "./apply-facts.js";
import type { LedgerDeps } from "./deps.js";
import { ensureAccountOnce } from "./ensure-account.js";
import { untilSettled } from "./retry.js";
import { type DueAllowance, dueAllowance, expectedNextGrantAt } from "./schedule.js";
import { LAST_SCHEDULED_ANNUAL_MONTH, monthGrant, recordPayment, withMonthPassedOver } from "./paid-year.js";
import type { AccountCommit } from "./store.js";
import { parseInput } from "../validation.js";
import { creditAmountSchema, entryKeySchema, userIdSchema } from "./validation.js";

export type GrantResult = { applied: boolean; entry: LedgerEntry; balance: number };

/** Applies facts to an account until they land or prove to be duplicates; shared by every writer. */
async function applyFacts(
  deps: LedgerDeps,
  userId: string,
  build: (account: AccountRecord) => AccountCommit,
): Promise<FactResult> {
  // Creating the account is part of every attempt: a transient failure on a first-sight fact is
  // retried like any other (creation and facts are each conditional, so nothing doubles).
  return untilSettled(async () => {
    const account = await ensureAccountOnce(deps, userId);
    const commit = build(account);
    const result = resolveFactCommit(await deps.store.commit(commit), commit, account);
    return result === "stale" ? undefined : result;
  });
}

async function firstResult(deps: LedgerDeps, userId: string, result: FactResult, key: string): Promise<GrantResult> {
  if (result.applied) {
    const entry = result.entries.find((candidate) => candidate.key === key) as LedgerEntry;
    return { applied: true, entry, balance: result.account.balance };
  }
  const entry = await deps.store.getEntry(userId, key);
  if (!entry) throw new Error(`ledger entry ${key} reported as duplicate but not found`);
  return { applied: false, entry, balance: entry.balanceAfter };
}

const grantInputSchema = z.object({
  userId: userIdSchema,
  key: entryKeySchema,
  amount: creditAmountSchema,
  bucket: z.enum(["allowance", "purchased"]),
  reason: z.enum(["allowance", "invoice", "pack", "upgrade", "admin"]),
  refs: z.optional(z.record(z.string(), z.union([z.string().check(z.maxLength(500)), z.number()]))),
  /**
   * A payment of an annual year: what it pays for that year's scheduled months (lib/ledger/paid-year.ts),
   * recorded in the same commit as its grant (so once, with it).
   */
  paidShare: z.optional(
    z.object({
      anchor: z.number().check(z.int(), z.minimum(0)),
      fromMonth: z.number().check(z.int(), z.minimum(1)),
      monthly: z.number().check(z.int(), z.minimum(-1_000_000_000), z.maximum(1_000_000_000)),
      /** the subscription whose annual period the year is (the annual invoice's) */
      subscription: z.optional(z.string().check(z.minLength(1), z.maxLength(255))),
    }),
  ),
});
export type GrantInput = z.infer<typeof grantInputSchema>;

/**
 * Under a `reset` plan (only unpaid plans may have one: lib/catalog.ts), the unused allowance
 * lapses when the next period's scheduled allowance arrives, as an `expire` entry written with
 * that grant (so it lapses once, with it). Holds draw on allowance first, so the held part of it
 * does not lapse (a chat in flight keeps its reservation), nor do purchased credits: the lapse
 * never takes `available` below zero.
 */
function lapseFor(account: AccountRecord, key: string, catalog: LedgerDeps["catalog"]): CreditFact[] {
  if (planOf(account.plan, catalog).allowancePolicy !== "reset") return [];
  const held = account.balance - account.available;
  const unheldAllowance = splitOf(account).allowance - Math.max(0, held);
  const lapsing = Math.min(unheldAllowance, account.available);
  return lapsing > 0 ? [{ key, amount: -lapsing, bucket: "allowance", reason: "expire" }] : [];
}

/**
 * Adds credits for one business fact (allowance, invoice, pack, upgrade top-up, admin adjustment),
 * once per idempotency key. Only admin adjustments may be negative, and a deduction never takes
 * `available` below zero (docs/invariants.md, invariant 2): clawbacks are the separate `clawBack`.
 */
async function applyGrant(deps: LedgerDeps, input: GrantInput): Promise<GrantResult> {
  const { paidShare, ...grant } = parseInput(grantInputSchema, input);
  if (grant.amount < 0 && grant.reason !== "admin") {
    throw new ValidationError("amount must be positive; only admin adjustments may deduct", "amount");
  }
  // 0 credits only when the entry carries a paid share (an upgrade in an annual year's last
  // minutes still pays for its later months): the entry is what makes the share land once.
  if (grant.amount === 0 && !paidShare) throw new ValidationError("amount: must not be zero", "amount");
  const fact: CreditFact = { ...grant, refs: grant.refs ?? {} };
  const result = await applyFacts(deps, grant.userId, (account) => {
    if (grant.amount < 0 && account.available < -grant.amount) {
      throw new InsufficientCreditsError(-grant.amount, account.balance, account.available);
    }
    // A payment whose months the schedule has already passed in its year (granted without it, or
    // passed over unpaid): those months are settled with it, once (lib/ledger/paid-year.ts).
    const recorded =
      paidShare &&
      recordPayment(
        account.paidYears,
        { anchor: account.periodAnchor, lastGranted: account.periodIndex },
        paidShare.anchor,
        { payment: grant.key, fromMonth: paidShare.fromMonth, monthly: paidShare.monthly },
        paidShare.subscription,
      );
    const paidYears = recorded?.years;
    const facts: CreditFact[] = [fact];
    if (paidShare && recorded && recorded.credits !== 0) {
      facts.push({
        key: `${grant.key}#months`,
        amount: recorded.credits,
        bucket: "allowance",
        // a credited downgrade takes back the months it paid back, like a refund (the balance may go below zero)
        reason: recorded.credits < 0 ? "refund" : grant.reason,
        refs: { ...fact.refs, monthsPassed: recorded.monthsPassed, fromMonth: paidShare.fromMonth },
      });
    }
    return commitForFacts(account, facts, deps.now(), {
      ...(grant.amount < 0 ? { requireAvailable: -grant.amount } : {}),
      ...(paidYears ? { set: { paidYears } } : {}),
    });
  });
  return firstResult(deps, grant.userId, result, grant.key);
}

/**
 * `grantCredits`: a deduction refused for want of credits may be a retry whose first copy took
 * them: it is answered with that first entry, not refused for the credits it took itself.
 */
export async function grantCredits(deps: LedgerDeps, input: GrantInput): Promise<GrantResult> {
  try {
    return await applyGrant(deps, input);
  } catch (error) {
    if (!(error instanceof InsufficientCreditsError)) throw error;
    const entry = await deps.store.getEntry(input.userId, input.key);
    if (!entry) throw error;
    return { applied: false, entry, balance: entry.balanceAfter };
  }
}

const clawBackSchema = z.object({
  userId: userIdSchema,
  key: entryKeySchema,
  amount: creditAmountSchema.check(z.refine((value) => value > 0, "must be positive (the credits to take back)")),
  bucket: z.enum(["allowance", "purchased"]),
  reason: z.enum(["refund", "dispute"]),
  refs: z.optional(z.record(z.string(), z.union([z.string().check(z.maxLength(500)), z.number()]))),
});
export type ClawBackInput = z.infer<typeof clawBackSchema>;

/**
 * Takes back credits a refunded or disputed payment bought, once per key. Unlike every other
 * debit it may take the balance below zero (docs/invariants.md, invariant 2): the credits may
 * already be spent, and the debt is recorded so the gate refuses until the balance is positive
 * again.
 */
export async function clawBack(deps: LedgerDeps, input: ClawBackInput): Promise<GrantResult> {
  const claw = parseInput(clawBackSchema, input);
  const fact: CreditFact = { ...claw, amount: -claw.amount, refs: claw.refs ?? {} };
  const result = await applyFacts(deps, claw.userId, (account) => commitForFacts(account, [fact], deps.now()));
  return firstResult(deps, claw.userId, result, claw.key);
}

export type AllowanceResult = { granted: false } | { granted: true; applied: boolean; entry: LedgerEntry; balance: number };

/** A commit that moves no credits (the schedule fields only), at the account's seq. */
const scheduleOnly = (account: AccountRecord): AccountCommit => ({
  userId: account.userId,
  expectedSeq: account.seq,
  entries: [],
  balanceDelta: 0,
  availableDelta: 0,
});

/** Moves the schedule past `due` without granting: its period was granted before. */
function scheduleAdvance(account: AccountRecord, due: DueAllowance): AccountCommit {
  return {
    ...scheduleOnly(account),
    periodBelow: due.index,
    set: { periodIndex: due.index, ...(due.nextGrantAt === undefined ? {} : { nextGrantAt: due.nextGrantAt }) },
    ...(due.nextGrantAt === undefined ? { remove: ["nextGrantAt", "grantShard"] as (keyof AccountRecord)[] } : {}),
  };
}

/** Moves a `nextGrantAt` that is past with nothing due to the next real grant (or off the schedule). */
function scheduleRepair(account: AccountRecord, now: number, catalog: LedgerDeps["catalog"]): AccountCommit {
  const next = expectedNextGrantAt(account, catalog);
  return {
    ...scheduleOnly(account),
    ...(next !== undefined && next > now ? { set: { nextGrantAt: next } } : { remove: ["nextGrantAt", "grantShard"] }),
  };
}

/**
 * Grants the scheduled allowance due now (free plans every 30 days, annual plans monthly), once
 * per period however many callers race for it (lazy authorize, the sweep, a second authorize).
 * A free plan's period grants its allowance; an annual month grants what its year's payments paid
 * for it (lib/ledger/paid-year.ts), and nothing when nobody paid for that year (a renewal still
 * past due: the month is passed over, and settled by that payment when it comes). Missed free
 * periods are not back-filled; an annual year's missed months are, oldest first (they were paid).
 * The entry key is the period, and the account must not have granted that period yet. A `reset`
 * plan first expires its unused allowance (purchased credits and held credits never lapse).
 *
 * A schedule that is due but has nothing left to grant is repaired here, never left due: a past
 * `nextGrantAt` with no period due moves to the next grant, and a due period whose entry exists
 * already (granted under this key before, e.g. before a plan change re-set the schedule) moves the
 * schedule past it without granting again. Either way the account leaves the due state, so
 * authorize (whose admission requires no grant due) never waits on it.
 */
export async function grantAllowanceIfDue(deps: LedgerDeps, userIdInput: string): Promise<AllowanceResult> {
  const userId = parseInput(userIdSchema, userIdInput, "userId");
  // An annual year's missed months are due one after the other (lib/ledger/schedule.ts): grant
  // until nothing is due, so the account leaves the due state in one call. Bounded by the year.
  let first: AllowanceResult = { granted: false };
  for (let month = 0; month <= LAST_SCHEDULED_ANNUAL_MONTH; month++) {
    const { result, moreDue } = await grantOneDueAllowance(deps, userId);
    if (!first.granted) first = result;
    if (!moreDue) break;
  }
  return first;
}

/** One period granted (or passed over, or repaired), and whether the next one is due already. */
interface OneGrant {
  result: AllowanceResult;
  moreDue: boolean;
}

/**
 * Grants the one period due now (the oldest missed annual month first), or passes over a month of
 * an unpaid year; see `grantAllowanceIfDue`.
 */
async function grantOneDueAllowance(deps: LedgerDeps, userId: string): Promise<OneGrant> {
  return untilSettled<OneGrant>(async () => {
    // Creating the account is part of every attempt (see applyFacts).
    const account = await ensureAccountOnce(deps, userId);
    const now = deps.now();
    const due = dueAllowance(account, now, deps.catalog);
    const nothing: OneGrant = { result: { granted: false }, moreDue: false };
    if (!due) {
      if (account.nextGrantAt === undefined || account.nextGrantAt > now) return nothing;
      const repaired = await deps.store.commit(scheduleRepair(account, now, deps.catalog));
      return repaired.kind === "committed" ? nothing : undefined;
    }
    // only an annual year back-fills: the month after this one may be due already
    const moreDue = due.nextGrantAt !== undefined && due.nextGrantAt <= now;
    const plan = planOf(account.plan, deps.catalog);
    const advance = scheduleAdvance(account, due);
    // An annual month grants what was paid for it (lib/ledger/paid-year.ts), never the plan's allowance.
    const annual = plan.paid && account.interval === "year";
    const month = annual ? monthGrant(account.paidYears, account.periodAnchor, due.index) : undefined;
    if (annual && !month) {
      // Nobody paid for this year (a renewal still past due), or the year was left before this
      // month (its switch's events not applied yet): the month is passed over, not granted.
      // recorded as passed over, so the year's payment settles this month when it comes
      const passedOver = withMonthPassedOver(account.paidYears, account.periodAnchor, due.index);
      const skipped = await deps.store.commit({ ...advance, set: { ...advance.set, paidYears: passedOver } });
      if (skipped.kind !== "committed") return undefined;
      logger.warn("annual month not granted: its year is not paid, or was left before it", { userId, period: due.key, anchor: account.periodAnchor });
      return { result: { granted: false }, moreDue };
    }
    const facts = lapseFor(account, `expire#${due.key.slice("allowance#".length)}`, deps.catalog);
    const amount = month ? month.amount : plan.monthlyAllowance;
    // what a refunded payment's budget held back is named on the entry (a reversal may give it back)
    const withheld = month ? month.withheld : 0;
    facts.push({
      key: due.key,
      amount,
      bucket: "allowance",
      // below zero only when a credited downgrade takes from a month whose payment was refunded or
      // disputed: the customer has that money back twice, so the take stands like a refund's
      reason: amount < 0 ? "refund" : "allowance",
      refs: { plan: account.plan, period: due.index, ...(withheld > 0 ? { withheld } : {}) },
    });
    const commit = commitForFacts(account, facts, now, {
      periodBelow: advance.periodBelow,
      set: { ...advance.set, ...(month ? { paidYears: month.years } : {}) },
      ...(advance.remove ? { remove: advance.remove } : {}),
    });
    const result = resolveFactCommit(await deps.store.commit(commit), commit, account);
    if (result === "stale") return undefined;
    if (result.applied) return { result: { granted: true, ...(await firstResult(deps, userId, result, due.key)) }, moreDue };
    // The period's entry exists already: move the schedule past it (nothing is granted twice).
    const advanced = await deps.store.commit(advance);
    if (advanced.kind !== "committed") return undefined;
    logger.warn("allowance schedule repaired: its due period was granted before", { userId, period: due.key });
    const entry = await deps.store.getEntry(userId, due.key);
    return { result: entry ? { granted: true, applied: false, entry, balance: entry.balanceAfter } : { granted: false }, moreDue };
  });
}
