import { type BillingDeps, createPriceBook, dismissParkedEvent, replayParkedEvents } from "../../lib/billing/index.js";
import { catalog } from "../../lib/catalog.js";
import { auditAccount, ensureAccount } from "../../lib/ledger/index.js";
import { invoicePaid, TEST_PRICES } from "../helpers/billing.js";
import { stripeEvent, uniqueStripeId } from "../helpers/stripe-events.js";
import type { random } from "./harness.js";
import type { Delivery, Json } from "./stripe-world.js";

/**
 * Events that cannot be applied when they arrive, mixed into the storms (issue 16): each must end
 * applied (a receipt), or parked and then resolved by a replay, or dismissed by an operator —
 * never lost — and each user's balance must be what this small model says once the cause is fixed.
 *
 * - price: an invoice.paid of a plus/month price the deployment does not know yet (`NEW_PRICE`);
 *   the operator configures it and replays: the plus allowance, once.
 * - customer: an invoice.paid of a customer not mapped yet, and the pack checkout completion
 *   that maps it, in any order: the pack and the pro allowance, once each.
 * - pack: a paid pack session naming no pack: nothing can apply it; the operator dismisses it.
 */
export const NEW_PRICE = "price_plus_monthly_unconfigured";
const SIGNUP = 10_000;
const PLUS = 40_000;
const PRO = 100_000;
const STARTER = 50_000;

export type UnappliableKind = "price" | "customer" | "pack";

export interface UnappliableCase {
  kind: UnappliableKind;
  userId: string;
  customer: string;
  events: Json[];
  /** mapped by the API before Stripe sends anything (not for `customer`: that is the point) */
  mapped: boolean;
  balance: number;
}

export function buildUnappliable(rng: ReturnType<typeof random>, runId: string, count: number): { cases: UnappliableCase[]; deliveries: Delivery[] } {
  const kinds: UnappliableKind[] = ["price", "customer", "pack"];
  const cases = Array.from({ length: count }, (_, i): UnappliableCase => {
    const kind = kinds[i % kinds.length] as UnappliableKind;
    const userId = `unappliable-${kind}-${runId}-${i}`;
    const customer = uniqueStripeId(`cus_${runId}u`);
    if (kind === "price") {
      const paid = invoicePaid({ invoiceId: uniqueStripeId("in"), customer, subscriptionId: uniqueStripeId("sub"), userId, price: NEW_PRICE });
      return { kind, userId, customer, events: [paid], mapped: true, balance: SIGNUP + PLUS };
    }
    if (kind === "customer") {
      // no user in the invoice's metadata: only the customer mapping can say whose it is
      const paid = invoicePaid({ invoiceId: uniqueStripeId("in"), customer, subscriptionId: uniqueStripeId("sub"), userId: "", price: TEST_PRICES.STRIPE_PRICE_PRO_MONTHLY });
      const completed = stripeEvent("checkout.session.completed.payment", {
        object: { id: uniqueStripeId("cs_test"), customer, client_reference_id: userId, payment_intent: uniqueStripeId("pi"), metadata: { userId, pack: "starter" } },
      });
      return { kind, userId, customer, events: [paid, completed], mapped: false, balance: SIGNUP + STARTER + PRO };
    }
    const packless = stripeEvent("checkout.session.completed.payment", {
      object: { id: uniqueStripeId("cs_test"), customer, client_reference_id: userId, payment_intent: uniqueStripeId("pi"), metadata: { userId } },
    });
    delete packless.data.object.metadata.pack;
    return { kind, userId, customer, events: [packless], mapped: true, balance: SIGNUP };
  });
  const deliveries = cases.flatMap((entry) =>
    entry.events.flatMap((event) => Array.from({ length: rng.chance(0.5) ? 2 : 1 }, (_, copy) => ({ event, copy }))),
  );
  return { cases, deliveries };
}

/** What the API did before Stripe sent anything: the account and (except for `customer` cases) the customer mapping. */
export async function prepareUnappliable(billing: BillingDeps, cases: UnappliableCase[]): Promise<void> {
  for (const entry of cases) {
    if (!entry.mapped) continue;
    await ensureAccount(billing.ledger, entry.userId);
    await billing.store.putCustomerUser(entry.customer, entry.userId, 0);
  }
}

/**
 * The operator's fix after the storm: the new price configured (`events replay --all` with it) and
 * every packless session dismissed. Returns what the replay said.
 */
export async function fixUnappliable(billing: BillingDeps, cases: UnappliableCase[]) {
  const fixed: BillingDeps = { ...billing, prices: createPriceBook({ ...TEST_PRICES, STRIPE_PRICE_PLUS_MONTHLY: NEW_PRICE }, catalog) };
  const replayed = await replayParkedEvents(fixed);
  for (const entry of cases.filter((candidate) => candidate.kind === "pack")) {
    for (const event of entry.events) await dismissParkedEvent(billing, event.id, "no pack named: refunded by hand");
  }
  return replayed;
}

/**
 * Every unappliable event ended applied (receipt), resolved or dismissed, and every user's
 * balance and audit are what the model says. Returns the problems (empty when none) and counts.
 */
export async function checkUnappliable(billing: BillingDeps, cases: UnappliableCase[]) {
  const problems: string[] = [];
  const ended = { applied: 0, parkedThenResolved: 0, dismissed: 0, lost: 0, stillParked: 0 };
  for (const entry of cases) {
    for (const event of entry.events) {
      const [receipt, parked] = await Promise.all([billing.store.getReceipt(event.id), billing.store.getParkedEvent(event.id)]);
      if (parked?.status === "dismissed" && !receipt) ended.dismissed++;
      else if (parked?.status === "resolved" && receipt) ended.parkedThenResolved++;
      else if (!parked && receipt) ended.applied++;
      else if (parked?.status === "parked") {
        ended.stillParked++;
        problems.push(`${entry.kind} ${event.type} ${event.id}: still parked (${parked.reason})`);
      } else {
        ended.lost++;
        problems.push(`${entry.kind} ${event.type} ${event.id}: receipt ${receipt?.outcome}, parked ${parked?.status}`);
      }
    }
    const account = await billing.ledger.store.getAccount(entry.userId);
    if (account?.balance !== entry.balance) problems.push(`${entry.kind} ${entry.userId}: balance ${account?.balance}, model ${entry.balance}`);
    const audit = await auditAccount(billing.ledger, entry.userId);
    if (!audit.ok) problems.push(`${entry.kind} ${entry.userId}: audit ${audit.problems.join("; ")}`);
  }
  // the packless sessions must have been parked (and dismissed), the price cases parked then resolved
  for (const entry of cases) {
    const [event] = entry.events;
    const parked = await billing.store.getParkedEvent(event.id);
    if (entry.kind === "pack" && parked?.status !== "dismissed") problems.push(`pack ${event.id}: ${parked?.status}, not dismissed`);
    if (entry.kind === "price" && parked?.status !== "resolved") problems.push(`price ${event.id}: ${parked?.status}, not parked then resolved`);
  }
  return { problems, ended };
}
