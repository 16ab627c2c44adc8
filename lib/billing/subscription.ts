import { type BillingInterval, type PlanId, planOf } from "../catalog.js";
import { BusyError } from "../errors.js";
import type { SubscriptionState } from "../ledger/account.js";
import { ownYear, type PaidYear, yearOf, yearsLeftBy } from "../ledger/paid-year.js";
import { changePlanSchedule, endAnnualYear, ensureAccount } from "../ledger/index.js";
import { logger } from "../logger.js";
import type { BillingDeps } from "./deps.js";
import { countMetric } from "../metrics.js";
import { BILLING_METRICS } from "./metrics.js";
import type { BillingAccount, ExtraSubscription } from "./model.js";
import { settleYearEndClaws } from "./refunds.js";
import type { StripeSubscription } from "./stripe-objects.js";
import { ownValue } from "../own-keys.js";

/** Live subscriptions hold their plan: trialing counts, and past_due keeps the plan while Stripe retries. */
export const LIVE_STATUSES = new Set(["active", "trialing", "past_due"]);
export const isLive = (status: string | undefined) => status !== undefined && LIVE_STATUSES.has(status);

/**
 * Stripe event times have one-second resolution, and `created` then `updated` of one subscription
 * often share the second. On a tie the state further along its lifecycle wins, so a late
 * `created (incomplete)` cannot undo an `updated (active)` of the same second.
 */
const LIFECYCLE_RANK: Record<string, number> = {
  incomplete: 0,
  trialing: 1,
  active: 2,
  past_due: 3,
  unpaid: 4,
  paused: 4,
  incomplete_expired: 5,
  canceled: 5,
};
const rankOf = (status: string) => LIFECYCLE_RANK[status] ?? 2;

/** A subscription in one of these states never becomes live again (Stripe makes a new one). */
const ENDED_STATUSES = new Set(["canceled", "incomplete_expired"]);
export const hasEnded = (status: string) => ENDED_STATUSES.has(status);

function isNewer(next: SubscriptionState, current: SubscriptionState): boolean {
  if (next.lastEventAt !== current.lastEventAt) return next.lastEventAt > current.lastEventAt;
  return rankOf(next.status) >= rankOf(current.status);
}

export interface SubscriptionSnapshot {
  id: string;
  status: string;
  customerId: string;
  itemId: string;
  priceId: string;
  /** epoch ms, from the subscription item (the pinned API version has no period on the subscription) */
  periodStart: number;
  periodEnd: number;
  cancelAtPeriodEnd: boolean;
  latestInvoiceId: string | undefined;
  metadata: Record<string, string>;
}

/** The subscription's plan item: the first whose price is a configured plan price (else the first). */
export function snapshotOf(subscription: StripeSubscription, deps: Pick<BillingDeps, "prices">): SubscriptionSnapshot {
  const items = subscription.items.data;
  const item = items.find((candidate) => deps.prices.planOfPrice(candidate.price.id)) ?? items[0];
  if (!item) throw new Error(`subscription ${subscription.id} has no items`);
  return {
    id: subscription.id,
    status: subscription.status,
    customerId: subscription.customer,
    itemId: item.id,
    priceId: item.price.id,
    periodStart: item.current_period_start * 1000,
    periodEnd: item.current_period_end * 1000,
    cancelAtPeriodEnd: subscription.cancel_at_period_end,
    latestInvoiceId: subscription.latest_invoice ?? undefined,
    metadata: subscription.metadata ?? {},
  };
}

export type SubscriptionOutcome =
  /** the account's subscription state now reflects this snapshot */
  | "applied"
  /** a newer state of this subscription was applied already: nothing changed */
  | "stale"
  /** a live subscription replaced an ended one as the account's subscription */
  | "replaced"
  /** the current subscription ended and a live extra subscription of the user took its place */
  | "promoted"
  /** a second live subscription of the user: recorded and reported, the current one stays */
  | "second_live_subscription"
  /** a subscription that is not the account's current one and not live (e.g. an old one deleted) */
  | "ignored_not_current";

/** The state of an extra subscription as a SubscriptionState, for comparisons and promotion. */
const extraState = (id: string, extra: ExtraSubscription): SubscriptionState => ({
  id,
  status: extra.status,
  priceId: extra.priceId,
  periodStart: extra.periodStart,
  periodEnd: extra.periodEnd,
  cancelAtPeriodEnd: extra.cancelAtPeriodEnd,
  // records from before extras carried their event time: the time they were seen is that time
  lastEventAt: extra.lastEventAt ?? extra.detectedAt,
});

/**
 * The live extra subscription to take over when the current one ends: one on a configured plan
 * before one that is not, the higher plan first, then the most recently reported. Records
 * without a period (written before extras carried one) cannot be promoted.
 */
function promotableExtra(deps: BillingDeps, account: BillingAccount): { id: string; extra: ExtraSubscription } | undefined {
  const candidates = Object.entries(account.extraSubscriptions ?? {})
    .filter(([, extra]) => isLive(extra.status) && typeof extra.periodStart === "number" && typeof extra.periodEnd === "number")
    .map(([id, extra]) => ({ id, extra, plan: deps.prices.planOfPrice(extra.priceId)?.plan }));
  const rank = (plan: PlanId | undefined) => (plan ? planOf(plan, deps.ledger.catalog).rank : -1);
  candidates.sort((a, b) => rank(b.plan) - rank(a.plan) || b.extra.lastEventAt - a.extra.lastEventAt);
  const [best] = candidates;
  return best && { id: best.id, extra: best.extra };
}

/** A second live subscription means the user pays twice: an ERROR log and a metric (alarmed). */
function reportSecondLive(userId: string, current: SubscriptionState, other: SubscriptionState): void {
  logger.error("second live subscription for one user", {
    userId,
    currentSubscription: current.id,
    otherSubscription: other.id,
    otherStatus: other.status,
  });
  countMetric(BILLING_METRICS.secondLiveSubscription);
}

/**
 * Applies a subscription as Stripe reported it at `at` (epoch ms, the event's time) to the
 * account, out-of-order safe: an older state of a subscription than the one recorded (current,
 * extra or ended) changes nothing. The current subscription follows its events; when it ends
 * while another live subscription of the user is recorded as extra, that one becomes the current
 * one in the same conditional write (a paying user is never dropped to free). Another live
 * subscription is recorded as extra and reported; another ended one is remembered as ended. Then
 * the account's plan is moved to what the current subscription implies. Grants nothing.
 */
export async function applySubscription(
  deps: BillingDeps,
  userId: string,
  snapshot: SubscriptionSnapshot,
  at: number,
): Promise<SubscriptionOutcome> {
  const next: SubscriptionState = {
    id: snapshot.id,
    status: snapshot.status,
    priceId: snapshot.priceId,
    periodStart: snapshot.periodStart,
    periodEnd: snapshot.periodEnd,
    cancelAtPeriodEnd: snapshot.cancelAtPeriodEnd,
    lastEventAt: at,
  };
  let outcome: SubscriptionOutcome | undefined;
  for (let attempt = 0; attempt < 10 && !outcome; attempt++) {
    const account = (await ensureAccount(deps.ledger, userId)) as BillingAccount;
    // Every write below is conditioned on this revision: a decision made from this read lands
    // only if no other event changed the subscription state since (else: read and decide again).
    const rev = account.subscriptionRev ?? 0;
    const current = account.subscription;
    if (!current || current.id === next.id) {
      const successor = current && !isLive(next.status) ? promotableExtra(deps, account) : undefined;
      // An annual year this state leaves is ended before the state is written: a crash in between
      // leaves the event without its receipt, and its redelivery ends it again, which changes
      // nothing the second time. A stale state too can show a year left before the one recorded,
      // and with no current subscription a first-heard state ends a year recorded as its own.
      await endLeftYears(deps, account, current, next);
      if (current && !isNewer(next, current)) outcome = "stale";
      else if (current && successor) {
        const promoted = await deps.store.replaceSubscription(userId, extraState(successor.id, successor.extra), rev, {
          ...(hasEnded(next.status) ? { ended: { id: next.id, lastEventAt: next.lastEventAt } } : {}),
          fromExtra: successor.id,
        });
        if (promoted) {
          logger.warn("current subscription ended; another live subscription of the user took its place", {
            userId,
            ended: next.id,
            promoted: successor.id,
          });
          outcome = "promoted";
        }
      } else if (await deps.store.replaceSubscription(userId, next, rev)) outcome = "applied";
      continue;
    }
    const extra = ownValue(account.extraSubscriptions, next.id);
    // Only a terminal end is remembered, and a terminal state wins a same-second tie: an
    // `incomplete` (not yet paid) subscription is not ended, its `active` of the same second counts.
    const endedAt = ownValue(account.endedSubscriptions, next.id);
    const recorded: ExtraSubscription = {
      status: next.status,
      priceId: next.priceId,
      periodStart: next.periodStart,
      periodEnd: next.periodEnd,
      cancelAtPeriodEnd: next.cancelAtPeriodEnd,
      lastEventAt: next.lastEventAt,
      detectedAt: extra?.detectedAt ?? at,
    };
    // Another subscription than the current one (an extra, an ended one, a new one) ends its own
    // years too, before its state is written (see annualYearLeft).
    await endLeftYears(deps, account, extra && endedAt === undefined ? extraState(next.id, extra) : undefined, next);
    if ((endedAt !== undefined && next.lastEventAt <= endedAt) || (extra && !isNewer(next, extraState(next.id, extra)))) {
      outcome = "stale";
    } else if (hasEnded(next.status)) {
      if (await deps.store.endOtherSubscription(userId, next.id, next.lastEventAt, rev, extra !== undefined)) outcome = "ignored_not_current";
    } else if (!isLive(next.status)) {
      // Not live yet or for now (incomplete, unpaid, paused): an extra keeps following its state
      // (not promotable while not live); one we do not know yet is not recorded until it is live.
      if (!extra) outcome = "ignored_not_current";
      else if (await deps.store.putExtraSubscription(userId, next.id, recorded, rev)) outcome = "ignored_not_current";
    } else if (isLive(current.status)) {
      if (await deps.store.putExtraSubscription(userId, next.id, recorded, rev)) {
        // reported once, when it becomes a second live one (not again on each of its later events)
        if (!extra || !isLive(extra.status)) reportSecondLive(userId, current, next);
        outcome = "second_live_subscription";
      }
    } else if (
      await deps.store.replaceSubscription(userId, next, rev, {
        ...(hasEnded(current.status) ? { ended: { id: current.id, lastEventAt: current.lastEventAt } } : {}),
        ...(extra ? { fromExtra: next.id } : {}),
      })
    ) {
      outcome = "replaced";
    }
  }
  if (!outcome) throw new BusyError();
  await reconcilePlan(deps, userId);
  return outcome;
}

/** An annual year Stripe stopped billing before its end: its start, and the instant it stopped (epoch ms). */
export interface YearLeft {
  anchor: number;
  endedAt: number;
}

/**
 * The annual years a state `next` of a subscription shows were left before their end, and when
 * (`previous`: the state of that subscription the account knew, if any):
 * - any paid year of this subscription (`years`, matched by the year's `subscription`) that
 *   `next`'s period starts strictly inside of: left at that start at the latest — also when
 *   `next` is stale, or its subscription is no longer (or not) the current one (a switch's own
 *   event retried after a later switch's, or after a new subscription, still tells when the year
 *   was left; the earliest end wins);
 * and when `next` is newer than `previous`:
 * - a switch out of the year (the portal restarts the billing cycle: to monthly, or to another
 *   annual period): `next`'s period starts inside `previous`'s annual one, so that year ended at
 *   that start — whatever happened since (a later cancellation's event may bring the switch);
 * - a cancellation: the annual period it was canceled in ends at the cancellation (the event's
 *   time): `next`'s own period when it is annual (a renewal or a switch not applied yet is its own
 *   year), else `previous`'s when `next` is still in it. Without a known previous state (a
 *   subscription never recorded), only a year recorded as its own.
 * A renewal (the new period starts where the year ends), a plan change within the year (same
 * period), and a subscription that stops being live in its period without ending (unpaid, paused:
 * it may be paid and resume the same year) leave nothing.
 */
export function annualYearLeft(
  deps: Pick<BillingDeps, "prices">,
  previous: SubscriptionState | undefined,
  next: SubscriptionState,
  years?: readonly PaidYear[],
): YearLeft[] {
  const annual = (state: SubscriptionState) => deps.prices.planOfPrice(state.priceId)?.interval === "year";
  const left: YearLeft[] = [];
  for (const anchor of yearsLeftBy(years, next.id, next.periodStart)) left.push({ anchor, endedAt: next.periodStart });
  if (!previous) {
    if (hasEnded(next.status) && annual(next) && yearOf(years, next.periodStart)?.subscription === next.id) {
      left.push({ anchor: next.periodStart, endedAt: Math.max(next.periodStart, next.lastEventAt) });
    }
    return left;
  }
  if (hasEnded(previous.status) || !isNewer(next, previous)) return left;
  const samePeriod = next.periodStart === previous.periodStart;
  if (annual(previous) && !samePeriod && next.periodStart > previous.periodStart && next.periodStart < previous.periodEnd) {
    left.push({ anchor: previous.periodStart, endedAt: next.periodStart });
  }
  if (hasEnded(next.status)) {
    const anchor = annual(next) ? next.periodStart : annual(previous) && samePeriod ? previous.periodStart : undefined;
    if (anchor !== undefined) left.push({ anchor, endedAt: Math.max(anchor, next.lastEventAt) });
  }
  return left;
}

/**
 * Ends the annual years `next` leaves (see `annualYearLeft`), then moves the clawbacks of each
 * year's refunded or disputed payments to what their facts say now that it has no more months.
 */
async function endLeftYears(
  deps: BillingDeps,
  account: BillingAccount,
  previous: SubscriptionState | undefined,
  next: SubscriptionState,
): Promise<void> {
  const userId = account.userId;
  for (const left of annualYearLeft(deps, previous, next, account.paidYears)) {
    const ended = await endAnnualYear(deps.ledger, { userId, ...left, subscription: next.id });
    await settleYearEndClaws(deps, userId, left.anchor, ended.endedAfter);
  }
}

/**
 * A year's payment heard after its subscription's end (Stripe's events out of order: the
 * deletion, first heard while the year was not recorded yet, ended nothing): once the payment
 * records the year, the subscription's known ended state ends it as it would have had the payment
 * come first (`annualYearLeft`'s rule for an ended state: its own annual period ends at its event).
 * Only when that state's own period is the year this payment recorded: a year the subscription
 * left earlier (a switch whose event was stale or never heard) is not judged from here, since
 * when it was left is not known (docs/known-limitations.md). Idempotent: the earliest end wins.
 */
export async function endPaidYearOfEndedSubscription(deps: BillingDeps, userId: string, subscriptionId: string, anchor: number): Promise<void> {
  const account = (await ensureAccount(deps.ledger, userId)) as BillingAccount;
  const current = account.subscription;
  if (current?.id !== subscriptionId || !hasEnded(current.status) || deps.prices.planOfPrice(current.priceId)?.interval !== "year") return;
  const year = ownYear(account.paidYears, current.periodStart, subscriptionId);
  if (year === undefined || year !== ownYear(account.paidYears, anchor, subscriptionId)) return;
  const ended = await endAnnualYear(deps.ledger, { userId, anchor: current.periodStart, endedAt: Math.max(current.periodStart, current.lastEventAt), subscription: subscriptionId });
  await settleYearEndClaws(deps, userId, current.periodStart, ended.endedAfter);
}

interface DesiredPlan {
  plan: PlanId;
  interval: BillingInterval;
  periodStart?: number;
}

function desiredPlan(deps: BillingDeps, subscription: SubscriptionState | undefined): DesiredPlan | undefined {
  if (!subscription || !isLive(subscription.status)) return { plan: "free", interval: "month" };
  const mapped = deps.prices.planOfPrice(subscription.priceId);
  if (!mapped) {
    logger.error("live subscription on a price that is not a configured plan", {
      subscription: subscription.id,
      priceId: subscription.priceId,
    });
    return undefined;
  }
  return { ...mapped, periodStart: subscription.periodStart };
}

function planMatches(account: BillingAccount, desired: DesiredPlan): boolean {
  if (account.plan !== desired.plan || account.interval !== desired.interval) return false;
  // An annual plan's monthly grants are anchored at its period start: a renewal re-anchors them.
  return desired.interval !== "year" || desired.plan === "free" || account.periodAnchor === desired.periodStart;
}

/**
 * Moves the account's plan (and allowance schedule) to what its current subscription state
 * implies. Re-reads after each change, so concurrent appliers converge on the latest state.
 */
export async function reconcilePlan(deps: BillingDeps, userId: string): Promise<BillingAccount> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const account = (await ensureAccount(deps.ledger, userId)) as BillingAccount;
    const desired = desiredPlan(deps, account.subscription);
    if (!desired || planMatches(account, desired)) return account;
    await changePlanSchedule(deps.ledger, { userId, ...desired });
  }
  throw new BusyError();
}
