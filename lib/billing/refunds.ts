import { BusyError } from "../errors.js";
import { clawBack } from "../ledger/index.js";
import { logger } from "../logger.js";
import { requireStripe } from "./checkout.js";
import type { BillingDeps } from "./deps.js";
import type { ClawRecord, PurchaseRecord } from "./store.js";

export type ClawFact =
  | { kind: "refund"; chargeId: string; paymentIntentId: string; chargeAmount: number; refundedCents: number }
  | { kind: "dispute"; chargeId: string; paymentIntentId: string; disputeId: string; disputedCents: number };

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

const YEAR_MS = 366 * 24 * 3600 * 1000;

/**
 * Credits a payment has granted so far. A pack or a monthly invoice grants all it buys at once;
 * an annual invoice grants month 0 itself and the schedule grants the rest month by month
 * (`allowance#…` entries in the year after it), so a refund can only take back what was granted:
 * a year refunded in half at month 5 takes the six months granted and leaves the six to come.
 * Read from the ledger: refunds are rare, and the entries are the truth.
 */
async function grantedSoFar(deps: BillingDeps, purchase: PurchaseRecord): Promise<number> {
  const months = purchase.months ?? 1;
  if (months <= 1) return purchase.credits;
  const scheduled = (await deps.ledger.store.allEntries(purchase.userId))
    .filter(
      (entry) =>
        entry.reason === "allowance" &&
        entry.key.startsWith("allowance#") &&
        entry.amount > 0 &&
        entry.createdAt >= purchase.createdAt &&
        entry.createdAt < purchase.createdAt + YEAR_MS,
    )
    .sort((a, b) => a.createdAt - b.createdAt)
    .slice(0, months - 1);
  return purchase.credits + scheduled.reduce((sum, entry) => sum + entry.amount, 0);
}

/** The ledger key of a clawback fact (invariant 3): a refund by its charge's cumulative amount, a dispute by its id. */
export function clawKey(fact: ClawFact): string {
  return fact.kind === "refund" ? `refund#${fact.chargeId}#${fact.refundedCents}` : `dispute#${fact.disputeId}`;
}

/**
 * Takes back, once, the credits a refunded or disputed payment bought, in proportion to the
 * money returned: credits to take = round(credits bought × money returned / money paid), at most
 * what it has granted so far (an annual invoice's months come one by one), minus what earlier
 * facts of the same charge took. `charge.refunded` carries the cumulative refunded
 * amount, so facts are keyed by charge and cumulative amount: a redelivery, or an older partial
 * refund arriving after a newer one, takes nothing more. The per-charge record is written
 * (versioned) before the ledger clawback, and names what each fact takes, so a crash in between
 * is finished by the retry with the same key and amount.
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
  const granted = await grantedSoFar(deps, purchase);
  let credits: number | undefined;
  for (let attempt = 0; attempt < 10 && credits === undefined; attempt++) {
    const stored = await deps.store.getClaw(fact.chargeId);
    const claw: ClawRecord = stored ?? {
      chargeId: fact.chargeId,
      userId: purchase.userId,
      purchaseId: purchase.id,
      credits: purchase.credits * (purchase.months ?? 1), // what the payment bought
      basisCents: purchase.amountCents > 0 ? purchase.amountCents : fact.kind === "refund" ? fact.chargeAmount : 0,
      refundedCents: 0,
      disputes: {},
      clawed: 0,
      claws: {},
      version: 0,
    };
    const recorded = claw.claws[key];
    if (recorded !== undefined) {
      credits = recorded;
      break;
    }
    const refundedCents = fact.kind === "refund" ? Math.max(claw.refundedCents, fact.refundedCents) : claw.refundedCents;
    const disputes = fact.kind === "dispute" ? { ...claw.disputes, [fact.disputeId]: fact.disputedCents } : claw.disputes;
    const returnedCents = Math.min(
      claw.basisCents,
      refundedCents + Object.values(disputes).reduce((sum, cents) => sum + cents, 0),
    );
    // Proportional to the money returned, never more than the payment has granted so far.
    const proportional = claw.basisCents > 0 ? Math.round((claw.credits * returnedCents) / claw.basisCents) : 0;
    const target = Math.min(claw.credits, proportional, granted);
    const take = Math.max(0, target - claw.clawed);
    const next: ClawRecord = {
      ...claw,
      refundedCents,
      disputes,
      clawed: claw.clawed + take,
      claws: { ...claw.claws, [key]: take },
      version: claw.version + 1,
    };
    if (await deps.store.putClaw(next, claw.version)) credits = take;
  }
  if (credits === undefined) throw new BusyError();
  if (credits === 0) return "nothing_left_to_claw_back";
  const result = await clawBack(deps.ledger, {
    userId: purchase.userId,
    key,
    amount: credits,
    bucket: purchase.bucket,
    reason: fact.kind,
    refs: {
      charge: fact.chargeId,
      paymentIntent: fact.paymentIntentId,
      purchase: purchase.id,
      grant: purchase.grantKey,
      ...(fact.kind === "dispute" ? { dispute: fact.disputeId } : { refundedCents: fact.refundedCents }),
    },
  });
  if (result.balance < 0) logger.warn("clawback left the balance negative", { userId: purchase.userId, balance: result.balance });
  return result.applied ? "clawed_back" : "already_clawed_back";
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
