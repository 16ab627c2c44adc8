import { comparePlans, type PlanId, planOf } from "../catalog.js";
import { ConflictError, StripeNotConfiguredError, ValidationError } from "../errors.js";
import { ensureAccount, grantCredits } from "../ledger/index.js";
import { parseInput, userIdSchema } from "../ledger/validation.js";
import { logger } from "../logger.js";
import type { BillingDeps } from "./deps.js";
import type { BillingAccount } from "./store.js";
import { appLink, requireStripe } from "./checkout.js";
import { applyWaitingClaws } from "./refunds.js";
import { subscriptionSchema } from "./stripe-objects.js";
import { applySubscription, isLive, type SubscriptionSnapshot, snapshotOf } from "./subscription.js";

/**
 * POST /v1/billing/portal: a Billing Portal session for the user's Stripe customer. Reads only
 * (the portal function has no table write access): a user we never saw has no customer either.
 */
export async function openPortal(deps: BillingDeps, userIdInput: string): Promise<{ portalUrl: string }> {
  const stripe = requireStripe(deps);
  const userId = parseInput(userIdSchema, userIdInput, "userId");
  const account = (await deps.ledger.store.getAccount(userId)) as BillingAccount | undefined;
  if (!account?.stripeCustomerId) {
    throw new ConflictError("There is no billing account yet: subscribe or buy a pack first", "NO_BILLING_ACCOUNT");
  }
  const session = await stripe.createPortalSession({ customer: account.stripeCustomerId, returnUrl: appLink(deps, "billing") });
  return { portalUrl: session.url };
}

/** Stripe's time as we apply it ourselves: whole seconds, like event times, so ties compare fairly. */
const secondsNow = (deps: BillingDeps) => Math.floor(deps.ledger.now() / 1000) * 1000;

function liveSubscriptionOf(account: BillingAccount) {
  const subscription = account.subscription;
  if (!subscription || !isLive(subscription.status)) {
    throw new ConflictError("You have no paid subscription; subscribe first", "CONFLICT", { reason: "NO_SUBSCRIPTION" });
  }
  return subscription;
}

export interface ChangePlanResult {
  status: "upgraded" | "downgraded";
  plan: PlanId;
  creditsAdded: number;
}

/** The ledger key of an upgrade top-up: once per subscription period (invariant 3). */
export const upgradeKey = (subscriptionId: string, periodStartMs: number) =>
  `upgrade#${subscriptionId}#${Math.floor(periodStartMs / 1000)}`;

/**
 * Grants the allowance difference of an upgrade, once per subscription period, and records which
 * invoice paid for it (so refunding that invoice takes the top-up back). Used by change-plan and,
 * as a backstop after a crash, by the proration invoice's `invoice.paid`.
 */
export async function grantUpgradeTopUp(
  deps: BillingDeps,
  input: { userId: string; subscriptionId: string; periodStart: number; from: PlanId; to: PlanId; invoiceId?: string | undefined; amountPaid?: number },
): Promise<number> {
  const topUp = planOf(input.to, deps.ledger.catalog).monthlyAllowance - planOf(input.from, deps.ledger.catalog).monthlyAllowance;
  if (topUp <= 0) return 0;
  const key = upgradeKey(input.subscriptionId, input.periodStart);
  const result = await grantCredits(deps.ledger, {
    userId: input.userId,
    key,
    amount: topUp,
    bucket: "allowance",
    reason: "upgrade",
    refs: {
      subscription: input.subscriptionId,
      from: input.from,
      to: input.to,
      ...(input.invoiceId ? { invoice: input.invoiceId } : {}),
    },
  });
  if (input.invoiceId && result.entry.refs.invoice === input.invoiceId && input.amountPaid !== undefined) {
    await deps.store.putPurchase({
      id: input.invoiceId,
      userId: input.userId,
      credits: result.entry.amount,
      bucket: "allowance",
      grantKey: key,
      amountCents: input.amountPaid,
      createdAt: deps.ledger.now(),
    });
    await applyWaitingClaws(deps, input.invoiceId);
  }
  return result.applied ? topUp : 0;
}

/**
 * POST /v1/billing/change-plan. Upgrades are prorated and invoiced at once
 * (`always_invoice`, `error_if_incomplete`: a declined card changes nothing and answers 402),
 * then the allowance difference is topped up once per subscription period. Downgrades take
 * effect at once without proration (the period was paid at the higher price, whose credits the
 * user keeps) and take no credits back.
 */
export async function changePlan(deps: BillingDeps, input: { userId: string; plan: PlanId }): Promise<ChangePlanResult> {
  const stripe = requireStripe(deps);
  const target = planOf(input.plan, deps.ledger.catalog);
  if (!target.paid) throw new ValidationError("plan: to go back to free, cancel the subscription", "plan");
  const account = (await ensureAccount(deps.ledger, input.userId)) as BillingAccount;
  const local = liveSubscriptionOf(account);
  const remote = await stripe.retrieveSubscription(local.id);
  const parsed = remote ? subscriptionSchema.safeParse(remote) : undefined;
  if (!parsed?.success || !isLive(parsed.data.status)) {
    throw new ConflictError("Your subscription is no longer active; subscribe again", "CONFLICT", { reason: "NO_SUBSCRIPTION" });
  }
  const before: SubscriptionSnapshot = snapshotOf(parsed.data, deps);
  // The plan we change from is the one Stripe bills now, not our copy: a switch made in the
  // portal whose webhook has not arrived yet must not count as an upgrade (and a top-up).
  const current = deps.prices.planOfPrice(before.priceId) ?? { plan: account.plan, interval: account.interval };
  const interval = current.interval;
  if (!target.intervals.includes(interval)) throw new ValidationError(`plan: ${input.plan} is not sold ${interval}ly`, "plan");
  const price = deps.prices.planPrice(input.plan, interval);
  if (!price) throw new StripeNotConfiguredError([deps.prices.planPriceVar(input.plan, interval)]);
  const direction = comparePlans(current.plan, input.plan);
  if (direction === 0) {
    throw new ConflictError(`You are already on the ${input.plan} plan`, "CONFLICT", { reason: "SAME_PLAN" });
  }
  const upgrade = direction > 0;
  // The key changes whenever the subscription was invoiced again or changed anywhere else (its
  // last applied event, e.g. a switch in the portal), so a later change in the same day is a new
  // request, while a double click or retry of this one is the same (the port adds a digest of the
  // parameters, which also carry the plan we upgrade from and the period).
  const intent = `creditgate:change-plan:${before.id}:${price}:${before.latestInvoiceId ?? "none"}:${local.lastEventAt}`;
  const updated = await stripe.updateSubscription(
    before.id,
    {
      items: [{ id: before.itemId, price }],
      expand: ["latest_invoice"],
      // A downgrade credits nothing back: the higher plan's top-up was granted for the period,
      // and prorating it away would let upgrade-then-downgrade buy credits for nothing.
      proration_behavior: upgrade ? "always_invoice" : "none",
      ...(upgrade ? { payment_behavior: "error_if_incomplete" as const } : {}),
      metadata: {
        userId: account.userId,
        plan: input.plan,
        interval,
        // read by the proration invoice's `invoice.paid`, which grants the same top-up if we crash here
        upgradeFrom: upgrade ? current.plan : "",
        upgradePeriodStart: upgrade ? String(Math.floor(before.periodStart / 1000)) : "",
      },
    },
    intent,
  );
  const after = snapshotOf(subscriptionSchema.parse(updated), deps);
  let creditsAdded = 0;
  const prorationInvoice = typeof updated.latest_invoice === "object" ? updated.latest_invoice : undefined;
  if (upgrade && prorationInvoice?.status === "paid") {
    creditsAdded = await grantUpgradeTopUp(deps, {
      userId: account.userId,
      subscriptionId: after.id,
      periodStart: before.periodStart,
      from: current.plan,
      to: input.plan,
      invoiceId: after.latestInvoiceId,
      amountPaid: prorationInvoice.amount_paid,
    });
  } else if (upgrade) {
    // Paid later (a bank debit still processing) or not at all: the top-up waits for that
    // invoice's `invoice.paid` (same key, with what was really paid as the refund basis).
    logger.info("upgrade invoice not paid yet; its invoice.paid grants the top-up", {
      userId: account.userId,
      invoice: after.latestInvoiceId,
      status: prorationInvoice?.status,
    });
  }
  await applySubscription(deps, account.userId, after, secondsNow(deps));
  return { status: upgrade ? "upgraded" : "downgraded", plan: input.plan, creditsAdded };
}

/** POST /v1/billing/cancel: cancel at the end of the paid period; free users are told so. */
export async function cancelSubscription(
  deps: BillingDeps,
  userId: string,
): Promise<{ status: "scheduled_cancel" | "already_free"; effectiveAt: string | null; message?: string }> {
  const account = (await ensureAccount(deps.ledger, userId)) as BillingAccount;
  const local = account.subscription;
  if (!local || !isLive(local.status)) {
    return { status: "already_free", effectiveAt: null, message: "You are on the free plan: there is nothing to cancel" };
  }
  if (local.cancelAtPeriodEnd) {
    return { status: "scheduled_cancel", effectiveAt: new Date(local.periodEnd).toISOString() };
  }
  const stripe = requireStripe(deps);
  // Keyed by the state we acted on: a retry is the same request; cancelling again after a
  // resume (a newer state) is a new one.
  const updated = await stripe.updateSubscription(
    local.id,
    { cancel_at_period_end: true },
    `creditgate:cancel:${local.id}:${local.lastEventAt}`,
  );
  const after = snapshotOf(subscriptionSchema.parse(updated), deps);
  await applySubscription(deps, userId, after, secondsNow(deps));
  return { status: "scheduled_cancel", effectiveAt: new Date(after.periodEnd).toISOString() };
}
