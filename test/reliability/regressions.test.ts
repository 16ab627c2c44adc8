import { beforeAll, describe, expect, it } from "vitest";
import { type BillingAccount, CHECKOUT_IN_FLIGHT_MS } from "../../lib/billing/index.js";
import { auditAccount, authorizeChat, getBalance, type LedgerDeps, type LedgerStore, settleChat } from "../../lib/ledger/index.js";
import { runSweep } from "../../lib/sweep/run-sweep.js";
import { createDynamoScheduleStore } from "../../lib/sweep/dynamo-schedule-store.js";
import { type BillingFixture, billingFixture, invoicePaid, T0, TEST_PRICES } from "../helpers/billing.js";
import { SONNET } from "../helpers/http.js";
import { uniqueUser, useLedgerFixture } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { chargeRefunded, stripeEvent, uniqueStripeId } from "../helpers/stripe-events.js";
import { killable } from "./chaos.js";

/**
 * The bugs the reliability suite found, each pinned by a small deterministic test (the storms and
 * the fault run find them only by chance and at scale).
 */
captureLogs();

const chat = (userId: string, requestId: string) => ({ userId, requestId, model: SONNET, inputTokens: 1_000, maxOutputTokens: 1_000 });

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

describe("ledger", () => {
  const fx = useLedgerFixture();

  // Found by the gate storm: `firstOutcome` read the settle entry, then the account's outbox; a
  // concurrent copy's `materialize` (put the entry, empty the outbox slot) could land between the
  // two reads, and the copy answered 404 "No such hold" for a settled hold.
  it("two copies of one settle at once both answer the settle, even when the first went through the outbox", async () => {
    const user = uniqueUser("race");
    const a = await authorizeChat(fx.deps, chat(user, "a"));
    const b = await authorizeChat(fx.deps, chat(user, "b"));
    await settleChat(fx.deps, { holdId: b.holdId, inputTokens: 1, outputTokens: 1 }); // a's fast path is now stale
    const entered = deferred();
    const proceed = deferred();
    const written = deferred();
    let interleaved = false;
    const real = fx.deps.store;
    const store: LedgerStore = {
      ...real,
      // copy 1 has put the charge in the outbox and is about to write its entry...
      async materialize(userId, entries) {
        entered.resolve();
        await proceed.promise;
        await real.materialize(userId, entries);
        written.resolve();
      },
      // ...when copy 2 looks for the entry (missing), and the entry is written right after.
      async getEntry(userId, key) {
        const entry = await real.getEntry(userId, key);
        if (!entry && !interleaved) {
          interleaved = true;
          proceed.resolve();
          await written.promise;
        }
        return entry;
      },
    };
    const deps: LedgerDeps = { ...fx.deps, store };
    const settle = { holdId: a.holdId, inputTokens: 1_000, outputTokens: 500 };
    const first = settleChat(deps, settle);
    await entered.promise;
    const second = settleChat(deps, settle);
    const answers = await Promise.allSettled([first, second]);
    expect(interleaved).toBe(true);
    expect(answers.map((answer) => (answer.status === "fulfilled" ? answer.value.status : String(answer.reason)))).toEqual(["settled", "settled"]);
    expect((await auditAccount(fx.deps, user)).problems).toEqual([]);
  });

  it("the sweep's summary counts every hold it released, however many accounts it visits at once", async () => {
    const users = Array.from({ length: 40 }, () => uniqueUser("expire"));
    for (const user of users) await authorizeChat(fx.deps, chat(user, "abandoned"));
    const later = { ...fx.deps, now: () => fx.clock.now() + 2 * 3_600_000 };
    const summary = await runSweep(later, createDynamoScheduleStore(fx.client, fx.tableName), { remainingMs: () => 600_000, concurrency: 8 });
    // (it used to say `summary.released += await …`, which loses the updates of concurrent visits)
    expect(summary.released).toBe(users.length);
    for (const user of users) expect((await getBalance(fx.deps, user)).held).toBe(0);
  });
});

describe("billing: Stripe delivers in any order", () => {
  let fx: BillingFixture;
  beforeAll(async () => {
    fx = await billingFixture();
  });
  const view = (userId: string) => getBalance(fx.deps.ledger, userId);

  function pack(userId: string) {
    const session = uniqueStripeId("cs_test_pay");
    const paymentIntent = uniqueStripeId("pi");
    const chargeId = uniqueStripeId("ch");
    const completed = stripeEvent("checkout.session.completed.payment", {
      object: { id: session, customer: null, client_reference_id: userId, payment_intent: paymentIntent, amount_total: 1_000, metadata: { userId, pack: "starter" } },
    });
    const refund = (refunded: number) =>
      chargeRefunded({ chargeId, paymentIntent, customer: null, amount: 1_000, refunded });
    const dispute = (amount: number) =>
      stripeEvent("charge.dispute.created", { object: { id: uniqueStripeId("dp"), charge: chargeId, payment_intent: paymentIntent, amount } });
    return { completed, refund, dispute };
  }

  it("a refund delivered before its pack's purchase is applied when the pack is", async () => {
    const userId = uniqueUser("early-refund");
    const { completed, refund } = pack(userId);
    const refunded = refund(1_000);
    const early = await fx.deliver(refunded);
    expect(early.status).toBe(200);
    expect(early.json.outcome).toBe("waiting_for_purchase"); // it used to be "ignored_unknown_payment", for good
    const granted = await fx.deliver(completed);
    expect(granted.json.outcome).toBe("pack_granted");
    expect(await view(userId)).toMatchObject({ balance: 10_000, purchased: 0, allowance: 10_000 });
    expect((await fx.deliver(refunded)).json.outcome).toBe("duplicate");
    expect((await fx.deliver(refund(1_000))).json.outcome).toBe("already_clawed_back"); // the same fact, another event
    expect((await view(userId)).balance).toBe(10_000);
    expect((await auditAccount(fx.deps.ledger, userId)).problems).toEqual([]);
  });

  it("a partial refund and a dispute delivered before the pack take their share once it arrives", async () => {
    const userId = uniqueUser("early-dispute");
    const { completed, refund, dispute } = pack(userId);
    expect((await fx.deliver(refund(250))).json.outcome).toBe("waiting_for_purchase");
    expect((await fx.deliver(dispute(250))).json.outcome).toBe("waiting_for_purchase");
    await fx.deliver(completed);
    // half the money came back: half of the 50,000 credits go
    expect(await view(userId)).toMatchObject({ balance: 35_000, purchased: 25_000 });
  });

  it("a refund of an invoice delivered before the invoice.paid that granted it", async () => {
    const userId = uniqueUser("early-invoice-refund");
    const customer = uniqueStripeId("cus");
    await fx.billing.store.putCustomerUser(customer, userId, 0);
    const invoiceId = uniqueStripeId("in");
    const paymentIntent = uniqueStripeId("pi");
    fx.stripe.invoicePayments.set(paymentIntent, invoiceId);
    const refund = chargeRefunded({ chargeId: uniqueStripeId("ch"), paymentIntent, customer, amount: 2_000, refunded: 1_000 });
    expect((await fx.deliver(refund)).json.outcome).toBe("waiting_for_purchase");
    const paid = await fx.deliver(invoicePaid({ invoiceId, customer, subscriptionId: uniqueStripeId("sub"), userId, price: TEST_PRICES.STRIPE_PRICE_PRO_MONTHLY }));
    expect(paid.json.outcome).toBe("allowance_granted");
    expect(await view(userId)).toMatchObject({ balance: 10_000 + 100_000 - 50_000, allowance: 60_000, purchased: 0 });
  });

  it("a refund arriving while the pack's webhook died between recording the purchase and granting waits for the grant", async () => {
    const userId = uniqueUser("half-granted");
    const { completed, refund } = pack(userId);
    const real = fx.billing.store;
    const kills = { enabled: true, rate: 1, random: () => 0, counts: new Map<string, number>() };
    fx.billing.store = killable("billing", real, { putPurchase: "after" }, kills);
    try {
      expect((await fx.deliver(completed)).status).toBe(500); // purchase recorded, nothing granted
    } finally {
      fx.billing.store = real;
    }
    // Taking the credits now would put 50,000 of debt in the allowance and leave them "purchased".
    expect((await fx.deliver(refund(1_000))).json.outcome).toBe("waiting_for_purchase");
    expect((await fx.deliver(completed)).json.outcome).toBe("pack_granted"); // Stripe's redelivery
    expect(await view(userId)).toMatchObject({ balance: 10_000, allowance: 10_000, purchased: 0 });
  });

  it("a payment failure delivered after a later payment is not recorded; a later failure is", async () => {
    const userId = uniqueUser("late-failure");
    const customer = uniqueStripeId("cus");
    await fx.billing.store.putCustomerUser(customer, userId, 0);
    const subscriptionId = uniqueStripeId("sub");
    const failed = (created: number) =>
      stripeEvent("invoice.payment_failed", {
        created,
        object: { id: uniqueStripeId("in"), customer, parent: { subscription_details: { subscription: subscriptionId, metadata: { userId } } } },
      });
    const paidAt = T0 + 100;
    await fx.deliver(invoicePaid({ invoiceId: uniqueStripeId("in"), customer, subscriptionId, userId, price: TEST_PRICES.STRIPE_PRICE_PRO_MONTHLY, created: paidAt, billingReason: "subscription_cycle" }));
    await fx.deliver(failed(paidAt - 50)); // older than the payment, delivered late
    expect((await fx.deps.ledger.store.getAccount(userId))?.paymentFailedAt).toBeUndefined();
    await fx.deliver(failed(paidAt + 50));
    expect((await fx.deps.ledger.store.getAccount(userId))?.paymentFailedAt).toBe((paidAt + 50) * 1000);
  });
});

describe("billing: a checkout whose Lambda died after Stripe made the session", () => {
  let fx: BillingFixture;
  beforeAll(async () => {
    fx = await billingFixture();
  });

  it("is resumed with the same session once the dead request cannot be running any more", async () => {
    const userId = uniqueUser("resume");
    const real = fx.billing.store;
    fx.billing.store = killable("billing", real, { recordCheckoutSession: "before" }, { enabled: true, rate: 1, random: () => 0, counts: new Map() });
    let died: Awaited<ReturnType<typeof fx.asUser>>;
    try {
      died = await fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/subscribe", { plan: "pro" });
    } finally {
      fx.billing.store = real;
    }
    expect(died.status).toBe(500);
    const [created] = fx.stripe.requestsTo("/v1/checkout/sessions", "POST");
    // Right away, the first request may still be running: a double click is still refused.
    const soon = await fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/subscribe", { plan: "pro" });
    expect(soon.status).toBe(409);
    expect(soon.json.error).toMatchObject({ reason: "CHECKOUT_PENDING" });
    expect(soon.json.error.checkoutUrl).toBeUndefined();
    // Later (it used to answer this 409 for the marker's whole 31 minutes), the checkout is resumed.
    fx.clock.value += CHECKOUT_IN_FLIGHT_MS;
    const resumed = await fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/subscribe", { plan: "pro" });
    expect(resumed.status).toBe(200);
    const attempts = fx.stripe.requestsTo("/v1/checkout/sessions", "POST");
    expect(attempts).toHaveLength(2);
    expect(attempts[1]?.idempotencyKey).toBe(created?.idempotencyKey); // Stripe answers with the session it made
    const stored = (await fx.deps.ledger.store.getAccount(userId)) as BillingAccount;
    expect(stored.pendingCheckout?.url).toBe(resumed.json.checkoutUrl);
    expect(fx.stripe.requestsTo("/v1/customers", "POST")).toHaveLength(1);
    const again = await fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/subscribe", { plan: "pro" });
    expect(again.json.error).toMatchObject({ reason: "CHECKOUT_PENDING", checkoutUrl: resumed.json.checkoutUrl });
  });
});
