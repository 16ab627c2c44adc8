import type { PackId } from "../catalog.js";
import { ConflictError, ValidationError } from "../errors.js";
import { ensureAccount } from "../ledger/index.js";
import { ensureCustomer } from "../billing/checkout.js";
import { appLink, type BillingDeps, requireStripe } from "../billing/deps.js";
import type { BillingAccount } from "../billing/model.js";
import { type AutoTopUpSettings, type AutoTopUpState, TOP_UP_FAILURE_LIMIT, type TopUpOutcome } from "./model.js";
import { startedIn, withSettings } from "./rules.js";
import { updateTopUp } from "./update.js";

/** What GET and PUT /v1/billing/auto-topup answer: the settings and where the user's top-ups stand. */
export interface AutoTopUpView {
  enabled: boolean;
  threshold: number | null;
  pack: PackId | null;
  monthlyLimit: number | null;
  /** top-ups started this calendar month (UTC), declined ones not counted */
  startedThisMonth: number;
  failuresInARow: number;
  failureLimit: number;
  /** why it is off when the user did not turn it off: "failures" (TOP_UP_FAILURE_LIMIT in a row) */
  disabledReason: "failures" | null;
  inFlight: boolean;
  lastAttempt: { at: string; outcome: TopUpOutcome; pack: string; invoiceId: string | null; actionUrl: string | null } | null;
}

export function viewOf(state: AutoTopUpState | undefined, now: number): AutoTopUpView {
  const last = state?.lastAttempt;
  return {
    enabled: state?.settings.enabled ?? false,
    threshold: state?.settings.threshold ?? null,
    pack: state?.settings.pack ?? null,
    monthlyLimit: state?.settings.monthlyLimit ?? null,
    startedThisMonth: state ? startedIn(state, now) : 0,
    failuresInARow: state?.failuresInARow ?? 0,
    failureLimit: TOP_UP_FAILURE_LIMIT,
    disabledReason: state?.disabledReason ?? null,
    inFlight: state?.inFlight !== undefined,
    lastAttempt: last
      ? { at: new Date(last.at).toISOString(), outcome: last.outcome, pack: last.pack, invoiceId: last.invoiceId ?? null, actionUrl: last.actionUrl ?? null }
      : null,
  };
}

/** GET /v1/billing/auto-topup. */
export async function getAutoTopUp(deps: BillingDeps, userId: string): Promise<AutoTopUpView> {
  return viewOf((await deps.topUps.get(userId))?.state, deps.ledger.now());
}

/**
 * PUT /v1/billing/auto-topup. Turning it on needs the pack's price configured and a card saved
 * for off-session use (a pack checkout saves one; POST /v1/billing/payment-method saves one
 * without buying), so a top-up never fails for want of either; turning it off needs nothing.
 */
export async function putAutoTopUp(deps: BillingDeps, userId: string, settings: AutoTopUpSettings): Promise<AutoTopUpView> {
  if (!deps.ledger.catalog.packs[settings.pack]) throw new ValidationError(`pack: unknown pack ${settings.pack}`, "pack");
  const account = (await ensureAccount(deps.ledger, userId)) as BillingAccount;
  if (settings.enabled) {
    const stripe = requireStripe(deps);
    if (!deps.prices.packPrice(settings.pack)) {
      throw new ConflictError(`The ${settings.pack} pack has no price configured (${deps.prices.packPriceVar(settings.pack)})`, "CONFLICT", {
        reason: "PACK_NOT_SOLD",
      });
    }
    const card = account.stripeCustomerId ? await stripe.savedPaymentMethod(account.stripeCustomerId) : undefined;
    if (!card) {
      throw new ConflictError("Save a card first: buy a pack, or POST /v1/billing/payment-method", "CONFLICT", { reason: "PAYMENT_METHOD_REQUIRED" });
    }
  }
  const now = deps.ledger.now();
  const state = await updateTopUp(deps, userId, (current) => {
    const next = withSettings(current?.state, settings, now);
    return { state: next, result: next };
  });
  return viewOf(state, now);
}

/**
 * The currency a setup session names (Stripe requires one in setup mode to choose the methods it
 * offers); the card it saves is charged later in the pack price's own currency.
 */
const SETUP_CURRENCY = "usd";

/**
 * POST /v1/billing/payment-method: a Checkout Session in setup mode, which saves a card to the
 * user's Stripe customer for off-session charges without buying anything. No pending marker (as
 * purchases have): two setup sessions cost nothing, and the card saved last is used.
 */
export async function startPaymentMethodSetup(deps: BillingDeps, input: { userId: string; email?: string | undefined }): Promise<{ checkoutUrl: string }> {
  const stripe = requireStripe(deps);
  const account = (await ensureAccount(deps.ledger, input.userId)) as BillingAccount;
  const customer = await ensureCustomer(deps, account, input.email);
  const now = deps.ledger.now();
  const session = await stripe.createCheckoutSession(
    {
      mode: "setup",
      customer,
      // a card: what an off-session charge of an invoice can use
      allowed_payment_method_types: ["card"],
      currency: SETUP_CURRENCY,
      client_reference_id: account.userId,
      metadata: { userId: account.userId, purpose: "auto_top_up" },
      setup_intent_data: { metadata: { userId: account.userId } },
      success_url: `${appLink(deps, "billing/success")}?kind=payment_method&session_id={CHECKOUT_SESSION_ID}`,
      cancel_url: appLink(deps, "billing/cancel"),
      expires_at: Math.floor((now + deps.checkoutTtlMs) / 1000),
    },
    // a new session per request (the port adds a digest of the parameters): nothing is bought
    `creditgate:setup:${account.userId}:${now}`,
  );
  return { checkoutUrl: session.url };
}
