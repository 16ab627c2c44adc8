import { type GrantInput, type GrantResult, grantCredits } from "../ledger/index.js";
import type { BillingDeps } from "./deps.js";
import { applyWaitingClaws } from "./refunds.js";

/** The payment that bought a grant: the id its purchase is recorded under (`pi_…`, `in_…`) and what it paid. */
export interface Payment {
  id: string;
  /** smallest currency unit: the basis of proportional refunds */
  amountCents: number;
}

/**
 * Grants what a payment bought, as a purchase a refund or dispute of it can take back from: the
 * purchase is recorded first (the first record stands; a refund arriving before the grant finds
 * it and waits: see clawBackPayment), then the credits are granted (once per key), then the
 * refunds and disputes of the payment that arrived before its purchase take their share. Without
 * a payment (a pack session without a payment intent) only the grant: nothing could refund it.
 */
export async function grantPurchase(deps: BillingDeps, grant: GrantInput, payment: Payment | undefined): Promise<GrantResult> {
  if (payment) {
    await deps.store.putPurchase({
      id: payment.id,
      userId: grant.userId,
      credits: grant.amount,
      bucket: grant.bucket,
      grantKey: grant.key,
      amountCents: payment.amountCents,
      createdAt: deps.ledger.now(),
      ...(grant.paidShare ? { share: grant.paidShare } : {}),
    });
  }
  const result = await grantCredits(deps.ledger, grant);
  if (payment) await applyWaitingClaws(deps, payment.id);
  return result;
}
