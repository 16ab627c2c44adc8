import { getBalance, grantCredits } from "../../lib/ledger/index.js";
import { type BillingFixture, customerOf } from "./billing.js";
import { uniqueUser } from "./ledger.js";
import { invoiceEvent } from "./stripe-official.js";

/** Auto top-up's settings as PUT /v1/billing/auto-topup takes them: on, below 5,000, starter, 5 a month, unless told. */
export const topUpSettings = (extra: Partial<{ enabled: boolean; threshold: number; pack: string; monthlyLimit: number }> = {}) => ({
  enabled: true,
  threshold: 5_000,
  pack: "starter",
  monthlyLimit: 5,
  ...extra,
});

/** What the auto top-up tests do to a billing fixture's users, its ledger and its loopback Stripe server. */
export function topUpKit(fx: BillingFixture) {
  return {
    /** A user with a Stripe customer and a saved default card, as a pack checkout leaves them. */
    async userWithCard(label: string) {
      const userId = uniqueUser(label);
      const customer = await customerOf(fx, userId);
      const card = fx.stripe.savePaymentMethod(customer, { default: true });
      return { userId, customer, card };
    },
    putAutoTopUp: (userId: string, body: unknown) => fx.asUser(fx.fns.subscribe.route, userId, "PUT /v1/billing/auto-topup", body),
    getAutoTopUp: (userId: string) => fx.asUser(fx.fns.subscribe.route, userId, "GET /v1/billing/auto-topup"),
    topUpState: async (userId: string) => (await fx.billing.topUps.get(userId))?.state,
    /** Moves a user's available credits to `available` (an admin adjustment, as spending would). */
    async setAvailable(userId: string, available: number, key: string) {
      const balance = await getBalance(fx.deps.ledger, userId);
      await grantCredits(fx.deps.ledger, { userId, amount: available - balance.available, bucket: "allowance", reason: "admin", key });
    },
    /** The `invoice.paid` Stripe sends for an invoice the loopback server holds, delivered signed. */
    async deliverPaid(invoiceId: string) {
      const stored = fx.stripe.invoices.get(invoiceId);
      if (!stored) throw new Error(`no invoice ${invoiceId}`);
      return fx.deliver(invoiceEvent(stored));
    },
    packGrants: async (userId: string) => (await fx.deps.ledger.store.allEntries(userId)).filter((entry) => entry.reason === "pack"),
  };
}
