import { randomUUID } from "node:crypto";
import { type BillingInterval, type PackId, type PlanId, planOf } from "../catalog.js";
import { ConflictError, UpstreamError, ValidationError } from "../errors.js";
import { ensureAccount } from "../ledger/index.js";
import { logger } from "../logger.js";
import { FUNCTIONS } from "../routes.js";
import { appLink, type BillingDeps, requireStripe, requireStripeAndPrice } from "./deps.js";
import type { BillingAccount, CheckoutKind, PendingCheckout } from "./model.js";
import type { StripePort } from "./stripe-port.js";
import { hasEnded, isLive } from "./subscription.js";

/**
 * The user's Stripe customer, created on first need. Stripe's idempotency key (per user) makes a
 * retried or concurrent create return the same customer; the mapping item is written before the
 * account's `stripeCustomerId`, and that one only if none is set, so an account never points at
 * a customer webhooks cannot resolve, and never changes customer.
 *
 * Stripe keeps a 5xx answer for its key (24 hours), and the per-user key would hand it to every
 * checkout of the user until then: after one, the create is tried once more at once, under a key
 * of its own second. A customer the failed call may have made is never linked (a spare, like the
 * one a first request with another email makes). A timeout of the first try is no answer and keeps
 * the per-user key, so the next request gets the customer Stripe made; one of the second try
 * leaves a spare, since the next request's second try has a second of its own.
 */
export async function ensureCustomer(deps: BillingDeps, account: BillingAccount, email: string | undefined): Promise<string> {
  if (account.stripeCustomerId) return account.stripeCustomerId;
  const stripe = requireStripe(deps);
  const params = { userId: account.userId, ...(email ? { email } : {}) };
  // the port adds a digest of the parameters (the email may differ between two first requests)
  const intent = `creditgate:customer:${account.userId}`;
  const customer = await stripe.createCustomer(params, intent).catch((error: unknown) => {
    if (!(error instanceof UpstreamError && error.answeredServerError)) throw error;
    logger.warn("Stripe answered a customer creation with a 5xx; trying once more under a new key", { userId: account.userId });
    return stripe.createCustomer(params, `${intent}:${Math.floor(deps.ledger.now() / 1000)}`);
  });
  await deps.store.putCustomerUser(customer.id, account.userId, deps.ledger.now());
  const linked = await deps.store.linkAccountCustomer(account.userId, customer.id);
  if (linked !== customer.id) {
    logger.warn("account already had another Stripe customer; keeping it", { userId: account.userId, kept: linked, unused: customer.id });
  }
  return linked;
}

function pendingConflict(existing: PendingCheckout | undefined): ConflictError {
  return new ConflictError("A checkout is already in progress; finish it or wait until it expires", "CONFLICT", {
    reason: "CHECKOUT_PENDING",
    ...(existing?.url ? { checkoutUrl: existing.url } : {}),
    ...(existing ? { expiresAt: new Date(existing.expiresAt).toISOString() } : {}),
  });
}

/**
 * How long a pending marker without a session may still belong to a request in flight: the
 * checkout function's timeout and a margin. An older one was left by a request that died between
 * claiming it and recording the session (a Lambda killed or timed out, maybe after Stripe made
 * the session), and the next attempt finishes that checkout instead of refusing for 31 minutes.
 */
export const CHECKOUT_IN_FLIGHT_MS = (FUNCTIONS.subscribe.timeoutSeconds + 5) * 1000;

/**
 * Runs one Checkout Session creation under the account's pending marker: the marker is claimed
 * first (a double click gets 409), the Stripe idempotency key is the marker's nonce (an SDK
 * retry returns the same session), and a Stripe failure releases the marker, so nothing is left
 * half-done. A marker left without a session by a request that died is resumed under its own
 * nonce, so Stripe answers with the session it already made (or makes it now).
 */
async function withPendingCheckout(
  deps: BillingDeps,
  account: BillingAccount,
  kind: CheckoutKind,
  request: string,
  create: (input: { customer: string; intent: string; expiresAt: number }) => Promise<{ id: string; url: string }>,
  email: string | undefined,
): Promise<{ checkoutUrl: string }> {
  const now = deps.ledger.now();
  let marker: PendingCheckout = { nonce: randomUUID(), expiresAt: now + deps.checkoutTtlMs, request };
  const claim = await deps.store.claimCheckout(account.userId, kind, marker, now);
  /** another request's marker taken over: a double click may be resuming it too */
  let resumed = false;
  if (!claim.claimed) {
    const existing = claim.existing;
    const abandoned = existing && !existing.url && now - (existing.expiresAt - deps.checkoutTtlMs) >= CHECKOUT_IN_FLIGHT_MS;
    // Resumed only for the same purchase: Stripe may hold a payable session for the dead request,
    // and a session for something else beside it could be paid too (two subscriptions).
    if (!abandoned || (existing.request !== undefined && existing.request !== request)) throw pendingConflict(existing);
    logger.warn("resuming a checkout whose request died before recording its session", { userId: account.userId, kind });
    marker = existing;
    resumed = true;
  }
  let session: { id: string; url: string };
  try {
    const customer = await ensureCustomer(deps, account, email);
    session = await create({
      customer,
      // With the port's digest of the parameters: a resumed checkout asking for another plan or
      // pack is a new session, not a reuse of the dead request's key with other parameters.
      intent: `creditgate:checkout:${kind}:${account.userId}:${marker.nonce}`,
      expiresAt: marker.expiresAt,
    });
  } catch (error) {
    if (error instanceof UpstreamError && error.ambiguous && (resumed || !error.answeredServerError)) {
      // No answer (a timeout), or a conflict with a call still running: Stripe may have made the
      // session: keep the marker, so the retry resumes under the same nonce (the same idempotency
      // key: Stripe answers with that session) instead of a second one. A resumed marker is kept
      // after a 5xx too: a double click resuming it with this request may have got the session
      // and be handing its URL out (an outside review showed a second session otherwise).
      logger.warn("checkout left pending after an unanswered Stripe call; a retry resumes it", { userId: account.userId, kind });
      throw error;
    }
    // Refused, or a 5xx answer to a fresh marker's call: Stripe keeps a 5xx for its idempotency key
    // (24 hours), so resuming under this nonce would get the same 5xx until the marker expires.
    // The marker goes and the retry starts afresh. A session the failed call may have made was
    // never shown to anyone (no other request holds a fresh nonce), so nothing can pay it.
    if (error instanceof UpstreamError && error.answeredServerError) logger.warn("checkout released after a Stripe 5xx; a retry starts afresh", { userId: account.userId, kind });
    await deps.store.releaseCheckout(account.userId, kind, { nonce: marker.nonce }).catch((releaseError: unknown) => {
      // The marker expires on its own; the caller still learns what failed first.
      logger.error("could not release a checkout marker", releaseError as Error);
    });
    throw error;
  }
  await deps.store.recordCheckoutSession(account.userId, kind, marker.nonce, session);
  return { checkoutUrl: session.url };
}

const successUrl = (deps: BillingDeps, kind: CheckoutKind) =>
  `${appLink(deps, `billing/success`)}?kind=${kind}&session_id={CHECKOUT_SESSION_ID}`;

/**
 * Creates the Checkout Session of a purchase (`withPendingCheckout`'s `create`): one `price`, the
 * user id as client_reference_id, `metadata` on the session and on what it makes (the
 * subscription, or a pack's payment intent), returning to APP_URL's success and cancel pages.
 */
const checkoutSession =
  (deps: BillingDeps, stripe: StripePort, account: BillingAccount, kind: CheckoutKind, price: string, metadata: Record<string, string>) =>
  ({ customer, intent, expiresAt }: { customer: string; intent: string; expiresAt: number }) =>
    stripe.createCheckoutSession(
      {
        mode: kind === "subscription" ? "subscription" : "payment",
        customer,
        client_reference_id: account.userId,
        line_items: [{ price, quantity: 1 }],
        metadata,
        // a pack's card is saved for off-session charges: auto top-up (lib/topup) charges it later
        ...(kind === "subscription" ? { subscription_data: { metadata } } : { payment_intent_data: { metadata, setup_future_usage: "off_session" } }),
        success_url: successUrl(deps, kind),
        cancel_url: appLink(deps, "billing/cancel"),
        expires_at: Math.floor(expiresAt / 1000),
      },
      intent,
    );

export interface SubscriptionCheckoutInput {
  userId: string;
  email?: string | undefined;
  plan?: PlanId;
  interval?: BillingInterval;
}

/**
 * POST /v1/billing/subscribe: a Checkout Session in subscription mode for a paid plan, its price
 * taken from configuration. The user id travels as client_reference_id and in the metadata of
 * the session and of the subscription it creates (webhooks read them after verification).
 */
export async function startSubscriptionCheckout(
  deps: BillingDeps,
  input: SubscriptionCheckoutInput,
): Promise<{ checkoutUrl: string }> {
  const plan = input.plan ?? "pro";
  const interval = input.interval ?? "month";
  const definition = planOf(plan, deps.ledger.catalog);
  if (!definition.paid) throw new ValidationError("plan: the free plan needs no subscription", "plan");
  if (!definition.intervals.includes(interval)) throw new ValidationError(`interval: ${plan} is not sold ${interval}ly`, "interval");
  const { stripe, price } = requireStripeAndPrice(deps, deps.prices.planPrice(plan, interval), deps.prices.planPriceVar(plan, interval));

  const account = (await ensureAccount(deps.ledger, input.userId)) as BillingAccount;
  const current = account.subscription;
  if (isLive(current?.status) || deps.ledger.catalog.plans[account.plan]?.paid) {
    throw new ConflictError("You already have a subscription; use change-plan or the billing portal", "CONFLICT", {
      reason: "SUBSCRIPTION_EXISTS",
    });
  }
  // Not live but not over either (unpaid, incomplete, paused): it can still be paid or resumed,
  // and a new one beside it would have the user pay for two.
  if (current && !hasEnded(current.status)) {
    throw new ConflictError(
      `Your current subscription is ${current.status}: pay the open invoice or cancel the subscription in the billing portal before subscribing again`,
      "CONFLICT",
      { reason: "SUBSCRIPTION_NOT_SETTLED", status: current.status },
    );
  }
  const metadata = { userId: account.userId, plan, interval };
  return withPendingCheckout(
    deps,
    account,
    "subscription",
    `subscription:${plan}:${interval}`,
    checkoutSession(deps, stripe, account, "subscription", price, metadata),
    input.email,
  );
}

/** POST /v1/billing/checkout: a one-time Checkout Session (payment mode) for a credit pack. */
export async function startPackCheckout(
  deps: BillingDeps,
  input: { userId: string; email?: string | undefined; pack: PackId },
): Promise<{ checkoutUrl: string }> {
  if (!deps.ledger.catalog.packs[input.pack]) throw new ValidationError(`pack: unknown pack ${input.pack}`, "pack");
  const { stripe, price } = requireStripeAndPrice(deps, deps.prices.packPrice(input.pack), deps.prices.packPriceVar(input.pack));

  const account = (await ensureAccount(deps.ledger, input.userId)) as BillingAccount;
  const metadata = { userId: account.userId, pack: input.pack };
  return withPendingCheckout(
    deps,
    account,
    "pack",
    `pack:${input.pack}`,
    checkoutSession(deps, stripe, account, "pack", price, metadata),
    input.email,
  );
}
