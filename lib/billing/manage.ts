import { comparePlans, type PlanId, planOf } from "../catalog.js";
import { ConflictError, StripeNotConfiguredError, ValidationError } from "../errors.js";
import { ensureAccount, grantAllowanceIfDue } from "../ledger/index.js";
import { type PaidYear, paidMonthlyFrom } from "../ledger/paid-year.js";
import { userIdSchema } from "../ledger/validation.js";
import { parseInput } from "../validation.js";
import { periodIndexAt } from "../periods.js";
import { logger } from "../logger.js";
import { appLink, type BillingDeps, requireStripe } from "./deps.js";
import type { BillingAccount } from "./model.js";
import { grantPurchase } from "./purchases.js";
import { invoiceSchema, prorationLines, type StripeInvoice, subscriptionSchema } from "./stripe-objects.js";
import { applySubscription, isLive, type SubscriptionSnapshot, snapshotOf } from "./subscription.js";
import {
  allowancePeriodAt,
  prorationInstant,
  topUpOf,
  type UpgradeTerms,
  upgradeKey,
  upgradeMetadata,
  upgradeShare,
} from "./upgrade-top-up.js";

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

export interface UpgradeTopUpResult {
  /** the credits the upgrade's terms are worth (`upgradeTopUp`) */
  credits: number;
  /** false when this invoice's top-up was granted before (or was worth nothing) */
  applied: boolean;
}

/**
 * Whether an invoice is the proration of the upgrade these terms describe: one of its proration
 * lines is the target plan's price starting at the terms' proration instant. Subscription metadata
 * outlives the update that wrote it, so a later proration invoice (a switch made in the portal, a
 * no-op update) may carry the same terms, but not a line starting at that instant.
 */
export function prorates(deps: Pick<BillingDeps, "prices">, invoice: StripeInvoice, terms: UpgradeTerms): boolean {
  const price = deps.prices.planPrice(terms.to, terms.interval);
  return price !== undefined && prorationLines(invoice).some((line) => line.price === price && line.periodStart === terms.at);
}

/**
 * Grants an upgrade's prorated top-up (`topUpOf`: the allowance difference times the fraction of
 * the allowance period left at the proration instant) once per paid proration invoice, and
 * records what that invoice paid for it (so refunding the invoice takes the top-up back). Used by
 * change-plan and, as a backstop after a crash or for an invoice paid later, by the proration
 * invoice's `invoice.paid`: same invoice, same key, same terms, same amount.
 */
export async function grantUpgradeTopUp(
  deps: BillingDeps,
  input: { userId: string; subscriptionId: string; invoiceId: string; terms: UpgradeTerms; amountPaid: number },
): Promise<UpgradeTopUpResult> {
  const { terms } = input;
  const credits = topUpOf(terms, deps.ledger.catalog);
  const share = upgradeShare(terms, deps.ledger.catalog);
  if (credits <= 0 && !share) return { credits: 0, applied: false };
  const result = await grantPurchase(
    deps,
    {
      userId: input.userId,
      key: upgradeKey(input.invoiceId),
      amount: credits,
      bucket: "allowance",
      reason: "upgrade",
      refs: {
        subscription: input.subscriptionId,
        invoice: input.invoiceId,
        from: terms.from,
        to: terms.to,
        at: terms.at,
        periodStart: terms.periodStart,
        periodEnd: terms.periodEnd,
      },
      ...(share ? { paidShare: share } : {}),
    },
    { id: input.invoiceId, amountCents: input.amountPaid },
  );
  return { credits, applied: result.applied };
}

/**
 * Whether the rest of an annual year is paid at `allowance` already: an upgrade back after a
 * downgrade (which gave no money back) keeps what the first upgrade paid, so Stripe must not
 * charge the difference again. The month in progress was granted at that level by then (by the
 * schedule, or by the first upgrade's top-up when it was this month).
 */
function alreadyPaidFor(years: PaidYear[] | undefined, yearStart: number, at: number, allowance: number): boolean {
  const month = periodIndexAt(yearStart, at * 1000, { kind: "calendarMonth" });
  return paidMonthlyFrom(years, yearStart, month + 1) >= allowance;
}

/**
 * POST /v1/billing/change-plan. Upgrades are prorated from an explicit instant and invoiced at
 * once (`always_invoice`, `error_if_incomplete`: a declined card changes nothing and answers
 * 402); once that invoice is paid, the allowance difference is topped up prorated from the same
 * instant, once per proration invoice. Downgrades take
 * effect at once without proration (the period was paid at the higher price, whose credits the
 * user keeps) and take no credits back. On an annual plan the months already paid at the higher
 * plan keep granting at it until the year ends (lib/ledger/paid-year.ts), and an upgrade back to
 * what the year has paid for is not charged again.
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
  // An upgrade is prorated from one instant (whole seconds), sent to Stripe as `proration_date`:
  // Stripe charges the price difference for the time left after it, and the top-up gives the
  // allowance difference for the time left after it (`upgradeTopUp`).
  let terms: UpgradeTerms | undefined;
  if (upgrade) {
    const subscriptionPeriod = { start: Math.floor(before.periodStart / 1000), end: Math.floor(before.periodEnd / 1000) };
    const at = prorationInstant(deps.ledger.now(), subscriptionPeriod);
    const period = allowancePeriodAt(interval, subscriptionPeriod, at);
    if (at >= subscriptionPeriod.end || period.end <= period.start) {
      // The period Stripe last told us of is over: the renewal is under way and there is nothing
      // left to prorate. Refused before Stripe is called (it used to change Stripe, then fail).
      throw new ConflictError("Your subscription is renewing right now; try again in a minute", "CONFLICT", {
        reason: "PERIOD_RENEWING",
        retryable: true,
      });
    }
    terms = {
      from: current.plan,
      to: input.plan,
      interval,
      at,
      periodStart: period.start,
      periodEnd: period.end,
      ...(interval === "year" ? { yearStart: subscriptionPeriod.start } : {}),
    };
    if (interval === "year") {
      // The allowance month in progress is granted first, from what was paid for it, so what
      // the year has paid for is up to date when we decide below.
      await grantAllowanceIfDue(deps.ledger, account.userId);
      const years = (await deps.ledger.store.getAccount(account.userId))?.paidYears;
      if (alreadyPaidFor(years, before.periodStart, at, target.monthlyAllowance)) terms = undefined;
    }
  }
  // The key changes whenever the subscription was invoiced again or changed anywhere else (its
  // last applied event, e.g. a switch in the portal), so a later change in the same day is a new
  // request, while a double click of this one in the same second is the same (the port adds a
  // digest of the parameters, which also carry the plan we upgrade from, the proration instant and
  // the period). The second is in the key of every change, not only an upgrade's (whose proration
  // instant is it): Stripe keeps the answer of a request it began for 24 hours, a 500 included, so
  // a downgrade's retry after a 5xx under a key without it would get the same 500 all day. Two
  // requests in different seconds change Stripe once: the later one reads the plan already
  // changed (SAME_PLAN), or, racing, sets the same price again, which prorates and invoices nothing.
  const intent = `creditgate:change-plan:${before.id}:${price}:${before.latestInvoiceId ?? "none"}:${local.lastEventAt}:${secondsNow(deps)}`;
  const updated = await stripe.updateSubscription(
    before.id,
    {
      items: [{ id: before.itemId, price }],
      expand: ["latest_invoice"],
      // A downgrade credits nothing back: the higher plan's top-up was granted for the period,
      // and prorating it away would let upgrade-then-downgrade buy credits for nothing. An annual
      // upgrade back to what the year has paid for already is not charged again.
      proration_behavior: terms ? "always_invoice" : "none",
      ...(terms ? { payment_behavior: "error_if_incomplete" as const, proration_date: terms.at } : {}),
      metadata: {
        userId: account.userId,
        plan: input.plan,
        interval,
        // read back from the proration invoice by its `invoice.paid`, which grants the same
        // top-up if we crash below or the invoice is paid later; a downgrade removes them
        ...upgradeMetadata(terms),
      },
    },
    intent,
  );
  const after = snapshotOf(subscriptionSchema.parse(updated), deps);
  let creditsAdded = 0;
  const expanded = typeof updated.latest_invoice === "object" ? invoiceSchema.safeParse(updated.latest_invoice) : undefined;
  // The invoice this update made for this proration (a new latest invoice, prorating this very
  // upgrade); none when a concurrent request made the upgrade and this update changed nothing:
  // the top-up belongs to that request's invoice, granted once for it.
  const prorationInvoice =
    terms && expanded?.success && expanded.data.id !== before.latestInvoiceId && prorates(deps, expanded.data, terms)
      ? expanded.data
      : undefined;
  if (terms && !prorationInvoice) {
    logger.warn("upgrade made no proration invoice of its own; no top-up", { userId: account.userId, subscription: after.id });
  } else if (terms && prorationInvoice?.status === "paid") {
    const topUp = await grantUpgradeTopUp(deps, {
      userId: account.userId,
      subscriptionId: after.id,
      invoiceId: prorationInvoice.id,
      terms,
      amountPaid: prorationInvoice.amount_paid,
    });
    creditsAdded = topUp.applied ? topUp.credits : 0;
  } else if (terms) {
    // Paid later (a bank debit still processing) or not at all: the top-up waits for that
    // invoice's `invoice.paid` (same key and terms, with what was really paid as the refund basis).
    logger.info("upgrade invoice not paid yet; its invoice.paid grants the top-up", {
      userId: account.userId,
      invoice: prorationInvoice?.id,
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
  // Keyed by the state we acted on and the second it was asked in: a double click is the same
  // request; cancelling again after a resume (a newer state) is a new one, and so is a retry a
  // second after a 5xx, which Stripe keeps for its key for 24 hours (setting cancel_at_period_end
  // twice changes nothing twice).
  const updated = await stripe.updateSubscription(
    local.id,
    { cancel_at_period_end: true },
    `creditgate:cancel:${local.id}:${local.lastEventAt}:${secondsNow(deps)}`,
  );
  const after = snapshotOf(subscriptionSchema.parse(updated), deps);
  await applySubscription(deps, userId, after, secondsNow(deps));
  return { status: "scheduled_cancel", effectiveAt: new Date(after.periodEnd).toISOString() };
}
