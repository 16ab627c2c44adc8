import { BusyError } from "../errors.js";
import type { AccountRecord, LedgerEntry } from "../ledger/account.js";
import { type AdjustmentResult, adjustForCharge, type ChargeAdjustment } from "../ledger/charge-adjust.js";
import { shareCredits, shareOf, withShareBudget, yearOf } from "../ledger/paid-year.js";
import { logger } from "../logger.js";
import { type ClawFact, type ClawPosition, bindingScheduleBudget, clawAdjustment, clawFactKey, withMoneyFact } from "./clawback.js";
import { type BillingDeps, requireStripe } from "./deps.js";
import type { BillingAccount, ClawRecord, PurchaseRecord } from "./model.js";

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

/** What a payment has granted so far, counting what its share's budget held back (see `ClawPosition`). */
interface GrantedSoFar {
  grantedGross: number;
  withheld: number;
}

/** Credits a payment buys: its own grant, plus its share of an annual year's scheduled months. */
export const boughtBy = (purchase: PurchaseRecord): number => purchase.credits + (purchase.share ? shareCredits(purchase.share) : 0);

/**
 * Credits a payment has granted so far. A pack or a monthly invoice grants all it buys at once;
 * a payment of an annual year grants its own part at once (month 0, an upgrade's top-up) and its
 * share of the scheduled months month by month, counted on the share itself (lib/ledger/paid-year.ts):
 * whatever the account did since (another year, another plan), that count is this payment's.
 * A year no longer kept (older than the previous one) is over: its share granted what it could.
 */
function grantedSoFar(purchase: PurchaseRecord, account: AccountRecord): GrantedSoFar {
  if (!purchase.share) return { grantedGross: purchase.credits, withheld: 0 };
  const share = shareOf(account.paidYears, purchase.share.anchor, purchase.grantKey);
  if (!share) return { grantedGross: boughtBy(purchase), withheld: 0 };
  return { grantedGross: purchase.credits + share.granted + share.withheld, withheld: share.withheld };
}

/**
 * The account's years with this payment's share budget set to `credits` (`undefined`: its months
 * may grant in full), or `undefined` when that changes nothing (no share kept, or the same budget).
 */
function budgetedYears(purchase: PurchaseRecord, account: AccountRecord, credits: number | undefined) {
  if (!purchase.share) return undefined;
  return withShareBudget(account.paidYears, purchase.share.anchor, purchase.grantKey, credits ?? null);
}

/**
 * What moves a charge's clawbacks: a fact about its money, or the end of the annual year its
 * payment paid for (no more months: what the budget was to hold back from them is taken now, and
 * what months granted after the end counted is no longer the payment's).
 */
type ClawTrigger = ClawFact | { kind: "year_end"; chargeId: string; paymentIntentId?: string; yearStart: number; endedAfter: number };

const isReversal = (trigger: ClawTrigger) => trigger.kind === "refund_reversed" || trigger.kind === "dispute_reversed";

/**
 * Compare-and-swap on a charge's record (retried when another writer got there first): `change`
 * decides the next record from the stored one, or `undefined` when there is nothing to write.
 * Returns the record as written, or as stored when nothing was written (`undefined`: none).
 */
async function updateClaw(
  deps: BillingDeps,
  chargeId: string,
  change: (stored: ClawRecord | undefined) => Promise<Omit<ClawRecord, "version"> | undefined>,
): Promise<ClawRecord | undefined> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const stored = await deps.store.getClaw(chargeId);
    const next = await change(stored);
    if (!next) return stored;
    const version = stored?.version ?? 0;
    const written: ClawRecord = { ...next, version: version + 1 };
    if (await deps.store.putClaw(written, version)) return written;
  }
  throw new BusyError();
}

/**
 * Records the fact in the charge's claw record (created on its first fact) and lists its ledger
 * key there, before anything can be written under that key. A fact already recorded changes nothing.
 */
async function recordFact(deps: BillingDeps, purchase: PurchaseRecord, fact: ClawFact, key: string): Promise<void> {
  await updateClaw(deps, fact.chargeId, async (stored) => {
    // listed on the account before its record exists, so the end of an annual year finds every
    // charge whose clawbacks counted that year's months (see settleYearEndClaws)
    if (!stored && purchase.share) await deps.store.linkClawCharge(purchase.userId, fact.chargeId);
    const claw: Omit<ClawRecord, "version"> = stored ?? {
      chargeId: fact.chargeId,
      userId: purchase.userId,
      purchaseId: purchase.id,
      credits: boughtBy(purchase), // what the payment bought
      basisCents: Math.max(0, purchase.amountCents), // 0: the refund's charge amount is the basis
      refundedCents: 0,
      disputes: {},
      claws: {},
    };
    const next = withMoneyFact(claw, fact);
    const listed = claw.claws[key] !== undefined;
    if (stored && listed && next === claw) return undefined;
    return { ...next, claws: listed ? claw.claws : { ...claw.claws, [key]: deps.ledger.now() } };
  });
}

function adjustmentEntry(fact: ClawTrigger, key: string, amount: number, purchase: PurchaseRecord): NonNullable<ChargeAdjustment["entry"]> {
  const disputeFact = fact.kind === "dispute" || fact.kind === "dispute_reversed";
  const refs: Record<string, string | number> = {
    charge: fact.chargeId,
    ...(fact.paymentIntentId ? { paymentIntent: fact.paymentIntentId } : {}),
    purchase: purchase.id,
    grant: purchase.grantKey,
  };
  if (fact.kind === "year_end") {
    refs.yearStart = fact.yearStart;
    refs.endedAfterMonth = fact.endedAfter;
  }
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
async function settleCharge(deps: BillingDeps, purchase: PurchaseRecord, fact: ClawTrigger, key: string): Promise<string> {
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
        ...grantedSoFar(purchase, account),
        clawedNet: -entries.reduce((sum, entry) => sum + (entry?.amount ?? 0), 0),
      };
      const move = own ? 0 : clawAdjustment(claw, position);
      // The share's budget, when its remaining months cannot all grant in full (lifted when they can).
      const paidYears = budgetedYears(purchase, account, bindingScheduleBudget(claw, { ...position, clawedNet: position.clawedNet + move }));
      if (move !== 0) return { entry: adjustmentEntry(fact, key, -move, purchase), ...(paidYears ? { paidYears } : {}) };
      if (!paidYears) return {};
      // Only the budget changes: it is written with an entry of 0 credits (see adjustForCharge),
      // keyed by the account state it was decided from, so the fact's own key stays unused.
      const budget = shareOf(paidYears, purchase.share?.anchor ?? -1, purchase.grantKey)?.budget;
      const entry = adjustmentEntry(fact, `budget#${fact.chargeId}#${account.seq}`, 0, purchase);
      return { entry: { ...entry, refs: { ...entry.refs, scheduleBudget: budget ?? "none" } }, paidYears };
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
  const key = clawFactKey(fact);
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

/** Lists a ledger key on a charge's existing record, before anything is written under it; false when the charge has no record. */
async function listClawKey(deps: BillingDeps, chargeId: string, key: string): Promise<boolean> {
  const claw = await updateClaw(deps, chargeId, async (stored) =>
    stored && stored.claws[key] === undefined ? { ...stored, claws: { ...stored.claws, [key]: deps.ledger.now() } } : undefined,
  );
  return claw !== undefined;
}

/**
 * After the annual year starting at `yearStart` ended while month `endedAfter` was in progress
 * (lib/ledger/year-end.ts): each refunded or disputed payment of that year has its charge moved to
 * what its facts say now, under `year-end#<ch>#<year start>#<month>` (listed on its record first).
 * The year has no more months, so what its budget was to hold back from them is taken now, and
 * what months granted after the end (undone by the year's end) counted is given back: the ledger
 * is the one the same facts leave when the year ends before the refund, or on time. Idempotent.
 */
export async function settleYearEndClaws(deps: BillingDeps, userId: string, yearStart: number, endedAfter: number): Promise<void> {
  const account = (await deps.ledger.store.getAccount(userId)) as BillingAccount | undefined;
  for (const chargeId of [...(account?.clawCharges ?? [])].sort()) {
    const claw = await deps.store.getClaw(chargeId);
    const purchase = claw && (await deps.store.getPurchase(claw.purchaseId));
    if (!purchase?.share || !yearOf([{ anchor: yearStart, shares: [] }], purchase.share.anchor)) continue;
    const key = `year-end#${chargeId}#${new Date(yearStart).toISOString()}#${endedAfter}`;
    if (!(await listClawKey(deps, chargeId, key))) continue;
    await settleCharge(deps, purchase, { kind: "year_end", chargeId, yearStart, endedAfter }, key);
  }
}
