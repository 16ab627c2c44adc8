import { isPlanId, planOf } from "../catalog.js";
import { BusyError } from "../errors.js";
import { type AdjustmentResult, adjustForCharge, type ChargeAdjustment } from "../ledger/charge-adjust.js";
import type { BudgetedAccount } from "../ledger/schedule-budget.js";
import { LAST_SCHEDULED_ANNUAL_MONTH } from "../ledger/schedule.js";
import type { LedgerEntry } from "../ledger/store.js";
import { logger } from "../logger.js";
import { DAY_MS, periodStart } from "../periods.js";
import { requireStripe } from "./checkout.js";
import { type ClawFact, type ClawPosition, bindingScheduleBudget, clawAdjustment, clawKey, withMoneyFact } from "./clawback.js";
import type { BillingDeps } from "./deps.js";
import type { ClawRecord, PurchaseRecord } from "./store.js";

export { type ClawFact, clawKey } from "./clawback.js";

/**
 * What a payment bought, and every id it may be recorded under. Packs record their payment intent
 * when granted; subscription invoices record the invoice, and the pinned API version links a
 * payment intent to its invoice only through invoice payments, so that one Stripe lookup happens
 * here, on the rare refund, rather than on every paid invoice.
 */
async function findPurchase(
  deps: BillingDeps,
  paymentIntentId: string,
): Promise<{ purchase: PurchaseRecord | undefined; ids: string[] }> {
  const direct = await deps.store.getPurchase(paymentIntentId);
  if (direct) return { purchase: direct, ids: [paymentIntentId] };
  const invoiceId = await requireStripe(deps).invoiceForPaymentIntent(paymentIntentId);
  return {
    purchase: invoiceId ? await deps.store.getPurchase(invoiceId) : undefined,
    ids: invoiceId ? [paymentIntentId, invoiceId] : [paymentIntentId],
  };
}

async function recordedPurchase(deps: BillingDeps, ids: string[]): Promise<PurchaseRecord | undefined> {
  for (const id of ids) {
    const purchase = await deps.store.getPurchase(id);
    if (purchase) return purchase;
  }
  return undefined;
}

/** True once the purchase's credits are in the ledger (its grant entry exists). */
async function isGranted(deps: BillingDeps, purchase: PurchaseRecord | undefined): Promise<boolean> {
  return purchase !== undefined && (await deps.ledger.store.getEntry(purchase.userId, purchase.grantKey)) !== undefined;
}

const YEAR_MS = 366 * DAY_MS;

/** What a payment has granted so far, counting what the schedule budget held back (see `ClawPosition`). */
interface GrantedSoFar {
  grantedGross: number;
  withheld: number;
}

/**
 * Credits a payment has granted so far. A pack or a monthly invoice grants all it buys at once;
 * an annual invoice grants month 0 itself and the schedule grants the rest month by month
 * (`allowance#…` entries of a paid plan in the year after it), so a refund can only take back
 * what was granted: a year refunded in half at month 5 takes the six months granted and leaves
 * the rest to the schedule budget. A month the budget held back names what it withheld; it counts
 * as granted (and as taken). Read from the ledger: refunds are rare, and the entries are the truth.
 */
async function grantedSoFar(deps: BillingDeps, purchase: PurchaseRecord): Promise<GrantedSoFar> {
  const months = purchase.months ?? 1;
  if (months <= 1) return { grantedGross: purchase.credits, withheld: 0 };
  const paidPlan = (plan: unknown) => typeof plan === "string" && isPlanId(plan) && planOf(plan, deps.ledger.catalog).paid;
  const scheduled = (await deps.ledger.store.allEntries(purchase.userId))
    .filter(
      (entry) =>
        entry.reason === "allowance" &&
        entry.key.startsWith("allowance#") &&
        entry.amount >= 0 &&
        paidPlan(entry.refs.plan) &&
        entry.createdAt >= purchase.createdAt &&
        entry.createdAt < purchase.createdAt + YEAR_MS,
    )
    .sort((a, b) => a.createdAt - b.createdAt)
    .slice(0, months - 1);
  const withheld = scheduled.reduce((sum, entry) => sum + (typeof entry.refs.withheld === "number" ? entry.refs.withheld : 0), 0);
  return { grantedGross: purchase.credits + scheduled.reduce((sum, entry) => sum + entry.amount, 0) + withheld, withheld };
}

/**
 * The anchor of the annual year the account's schedule is granting, when that year is the one
 * this purchase paid for (paid within it; a day's slack for Stripe's and our clocks): its
 * remaining months are what the schedule budget limits. Undefined otherwise (a pack, a monthly
 * invoice, a year already over or replaced): no schedule grants that purchase's months any more.
 */
function budgetAnchor(purchase: PurchaseRecord, account: BudgetedAccount): number | undefined {
  if ((purchase.months ?? 1) <= 1 || account.interval !== "year") return undefined;
  const anchor = account.periodAnchor;
  const yearEnd = periodStart(anchor, LAST_SCHEDULED_ANNUAL_MONTH + 1, { kind: "calendarMonth" });
  return purchase.createdAt >= anchor - DAY_MS && purchase.createdAt < yearEnd ? anchor : undefined;
}

const isReversal = (fact: ClawFact) => fact.kind === "refund_reversed" || fact.kind === "dispute_reversed";

/**
 * Records the fact in the charge's claw record (created on its first fact) and lists its ledger
 * key there, before anything can be written under that key. Compare-and-swap on the version;
 * a fact already recorded changes nothing.
 */
async function recordFact(deps: BillingDeps, purchase: PurchaseRecord, fact: ClawFact, key: string): Promise<void> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const stored = await deps.store.getClaw(fact.chargeId);
    const claw: ClawRecord = stored ?? {
      chargeId: fact.chargeId,
      userId: purchase.userId,
      purchaseId: purchase.id,
      credits: purchase.credits * (purchase.months ?? 1), // what the payment bought
      basisCents: Math.max(0, purchase.amountCents), // 0: the refund's charge amount is the basis
      refundedCents: 0,
      disputes: {},
      claws: {},
      version: 0,
    };
    const next = withMoneyFact(claw, fact);
    const listed = claw.claws[key] !== undefined;
    if (stored && listed && next === claw) return;
    const claws = listed ? claw.claws : { ...claw.claws, [key]: deps.ledger.now() };
    if (await deps.store.putClaw({ ...next, claws, version: claw.version + 1 }, claw.version)) return;
  }
  throw new BusyError();
}

function adjustmentEntry(fact: ClawFact, key: string, amount: number, purchase: PurchaseRecord): NonNullable<ChargeAdjustment["entry"]> {
  const disputeFact = fact.kind === "dispute" || fact.kind === "dispute_reversed";
  const refs: Record<string, string | number> = {
    charge: fact.chargeId,
    paymentIntent: fact.paymentIntentId,
    purchase: purchase.id,
    grant: purchase.grantKey,
  };
  if (fact.kind === "refund") refs.refundedCents = fact.refundedCents;
  if (fact.kind === "dispute" || fact.kind === "dispute_reversed") refs.dispute = fact.disputeId;
  if (fact.kind === "refund_reversed") refs.refund = fact.refundId;
  const reason = amount > 0 || (amount === 0 && isReversal(fact)) ? "reinstate" : disputeFact ? "dispute" : "refund";
  return { key, amount, bucket: purchase.bucket, reason, refs };
}

/**
 * Moves the ledger to what the charge's facts say, in one conditional commit per fact (see
 * `adjustForCharge`): the credits the returned money stands for, as far as granted, less what the
 * charge's entries (the keys in its record) and the schedule budget already hold back; for the
 * annual year the account is in, the budget its remaining months may still grant, from the same
 * reads. The fact's own key is written at most once: a redelivered fact moves nothing more (its
 * budget is recomputed all the same, and a budget that changed without credits moving is written
 * with a 0-credit `budget#<ch>#<seq>` entry). Afterwards the record must still be the version
 * decided from: a fact recorded meanwhile may have decided the budget from an older record, so
 * this one decides again.
 */
async function settleCharge(deps: BillingDeps, purchase: PurchaseRecord, fact: ClawFact, key: string): Promise<string> {
  let granted: { at: string; year: GrantedSoFar } | undefined;
  const yearOf = async (account: BudgetedAccount) => {
    // Only a scheduled grant changes what the year granted, and each one advances the period.
    const at = `${account.periodAnchor}:${account.periodIndex}`;
    if (granted?.at !== at) granted = { at, year: await grantedSoFar(deps, purchase) };
    return granted.year;
  };
  // the fact's own entry: written by this call (in any round), or found written before it
  let written: AdjustmentResult | undefined;
  let before: LedgerEntry | undefined;
  for (let round = 0; round < 10; round++) {
    let decidedFrom = -1;
    let own: LedgerEntry | undefined;
    const result = await adjustForCharge(deps.ledger, purchase.userId, async (account) => {
      const claw = await deps.store.getClaw(fact.chargeId);
      if (!claw) throw new Error(`claw record of ${fact.chargeId} vanished`);
      decidedFrom = claw.version;
      const keys = Object.keys(claw.claws);
      const entries = await Promise.all(keys.map((listed) => deps.ledger.store.getEntry(purchase.userId, listed)));
      own = entries[keys.indexOf(key)];
      const position: ClawPosition = {
        bought: claw.credits,
        ...(await yearOf(account)),
        clawedNet: -entries.reduce((sum, entry) => sum + (entry?.amount ?? 0), 0),
      };
      const move = own ? 0 : clawAdjustment(claw, position);
      // The year's budget, when its remaining months cannot all grant in full (null: they can).
      const anchor = budgetAnchor(purchase, account);
      const credits = anchor === undefined ? undefined : bindingScheduleBudget(claw, { ...position, clawedNet: position.clawedNet + move });
      const budget = anchor === undefined ? undefined : credits === undefined ? null : { anchor, credits };
      if (move !== 0) return { entry: adjustmentEntry(fact, key, -move, purchase), ...(budget === undefined ? {} : { scheduleBudget: budget }) };
      const current = account.scheduleBudget?.anchor === anchor ? account.scheduleBudget : undefined;
      if (budget === undefined || (budget === null ? current === undefined : current?.credits === budget.credits)) return {};
      // Only the budget changes: it is written with an entry of 0 credits (see adjustForCharge),
      // keyed by the account state it was decided from, so the fact's own key stays unused.
      const entry = adjustmentEntry(fact, `budget#${fact.chargeId}#${account.seq}`, 0, purchase);
      return { entry: { ...entry, refs: { ...entry.refs, scheduleBudget: budget?.credits ?? "none" } }, scheduleBudget: budget };
    });
    if (result.entry?.key === key) written = result;
    if (round === 0) before = own;
    if ((await deps.store.getClaw(fact.chargeId))?.version === decidedFrom) break;
    if (round === 9) throw new BusyError();
  }
  if (written?.entry && written.entry.amount < 0 && written.balance < 0) {
    logger.warn("clawback left the balance negative", { userId: purchase.userId, balance: written.balance });
  }
  const moved = written?.entry ?? before;
  if (!moved) return isReversal(fact) ? "nothing_to_reinstate" : "nothing_left_to_claw_back";
  const kind = moved.amount > 0 ? "reinstated" : "clawed_back";
  return written ? kind : `already_${kind}`;
}

/**
 * Applies one fact about a refunded or disputed payment's money, once: a refund or a dispute takes
 * back credits in proportion to the money returned (at most what the payment has granted so far);
 * a failed or canceled refund and a won dispute give back what was taken beyond what the money
 * still returned stands for (see lib/billing/clawback.ts). Any arrival order, redelivery or
 * concurrency ends in the same ledger: the facts are recorded per charge (versioned, commutative),
 * then the ledger is moved to what all of them say, under the fact's own key.
 */
export async function clawBackPayment(deps: BillingDeps, fact: ClawFact): Promise<string> {
  const found = await findPurchase(deps, fact.paymentIntentId);
  let purchase = found.purchase;
  if (!(await isGranted(deps, purchase))) {
    // Stripe does not deliver in order: the payment's own event may come later (or be failing and
    // being retried, or be half-way: purchase recorded, credits not yet granted). Taking credits
    // before they are granted would leave the account's split wrong (debt in the allowance,
    // refunded credits still "purchased"), so park the fact where the grant will look once it has
    // granted, then look once more: whichever of the two writes last sees the other.
    await deps.store.putWaitingClaw(found.ids, fact, deps.ledger.now(), deps.receiptTtlSeconds);
    purchase = await recordedPurchase(deps, found.ids);
    if (!(await isGranted(deps, purchase))) {
      logger.info("refund or dispute of a payment that bought no credits (yet): parked", {
        charge: fact.chargeId,
        paymentIntent: fact.paymentIntentId,
      });
      return "waiting_for_purchase";
    }
  }
  if (!purchase) throw new Error("unreachable: a granted purchase was found");
  const key = clawKey(fact);
  await recordFact(deps, purchase, fact, key);
  return settleCharge(deps, purchase, fact, key);
}

/**
 * Applies the refunds and disputes that arrived before the purchase `purchaseId` was recorded.
 * Called right after a grant records its purchase; idempotent (each fact takes its credits once).
 */
export async function applyWaitingClaws(deps: BillingDeps, purchaseId: string): Promise<number> {
  const facts = await deps.store.waitingClaws(purchaseId);
  for (const fact of facts) await clawBackPayment(deps, fact);
  return facts.length;
}
