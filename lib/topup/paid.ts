import type { BillingDeps } from "../billing/deps.js";
import { afterPaid } from "./rules.js";
import { updateTopUp } from "./update.js";

/** `invoice.paid` of auto top-up `seq`'s invoice: the top-up ends as succeeded (lib/topup/rules.ts `afterPaid`). */
export async function topUpPaid(deps: BillingDeps, userId: string, seq: number, invoiceId: string): Promise<void> {
  const now = deps.ledger.now();
  await updateTopUp(deps, userId, (current) => (current ? { state: afterPaid(current.state, seq, invoiceId, now), result: undefined } : { result: undefined }));
}
