import type { BillingInterval, PlanId } from "../catalog.js";
import { BusyError } from "../errors.js";
import type { SubscriptionState } from "../ledger/account.js";
import { changePlanSchedule, ensureAccount } from "../ledger/index.js";
import { logger } from "../logger.js";
import type { BillingDeps } from "./deps.js";
import type { BillingAccount } from "./store.js";
import type { StripeSubscription } from "./stripe-objects.js";

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
  /** a second live subscription of the user: recorded and reported, the current one stays */
  | "second_live_subscription"
  /** a subscription that is not the account's current one and not live (e.g. an old one deleted) */
  | "ignored_not_current";

/**
 * Applies a subscription as Stripe reported it at `at` (epoch ms, the event's time) to the
 * account: out-of-order safe (an older state changes nothing), blind to subscriptions that are
 * not the account's current one unless they are live, and then moves the account's plan to what
 * the current subscription implies. Grants nothing.
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
    const current = account.subscription;
    const expected = current && { id: current.id, lastEventAt: current.lastEventAt };
    if (!current || current.id === next.id) {
      if (current && !isNewer(next, current)) outcome = "stale";
      else if (await deps.store.replaceSubscription(userId, next, expected)) outcome = "applied";
    } else if (isLive(next.status)) {
      if (isLive(current.status)) {
        await deps.store.putExtraSubscription(userId, next.id, { status: next.status, priceId: next.priceId, detectedAt: at });
        logger.error("second live subscription for one user", {
          userId,
          currentSubscription: current.id,
          otherSubscription: next.id,
          otherStatus: next.status,
        });
        outcome = "second_live_subscription";
      } else if (await deps.store.replaceSubscription(userId, next, expected)) {
        outcome = "replaced";
      }
    } else {
      if (account.extraSubscriptions?.[next.id]) await deps.store.removeExtraSubscription(userId, next.id);
      outcome = "ignored_not_current";
    }
  }
  if (!outcome) throw new BusyError();
  if (outcome === "applied" && !isLive(next.status)) {
    const others = Object.keys((await ensureAccount(deps.ledger, userId) as BillingAccount).extraSubscriptions ?? {});
    if (others.length) logger.warn("current subscription ended while another is live", { userId, others });
  }
  await reconcilePlan(deps, userId);
  return outcome;
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
