import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { catalog } from "../../lib/catalog.js";
import { auditAccount, getBalance, grantCredits } from "../../lib/ledger/index.js";
import { STALE_IN_FLIGHT_MS, TOP_UP_FAILURE_LIMIT } from "../../lib/topup/model.js";
import { runAutoTopUp } from "../../lib/topup/run.js";
import { createPriceBook } from "../../lib/billing/prices.js";
import { customerOf, TEST_PRICES, useBillingFixture } from "../helpers/billing.js";
import { type EventsPipeline, eventually, startEventsPipeline } from "../helpers/events-pipeline.js";
import { uniqueUser } from "../helpers/ledger.js";
import { checkoutSession, invoice as subscriptionInvoice, invoiceEvent, invoiceLine, officialEvent, topUpInvoice } from "../helpers/stripe-official.js";
import { uniqueStripeId } from "../helpers/stripe-events.js";
import { topUpKit, topUpSettings } from "../helpers/topup.js";
import { newWebhookSecret, startWebhookReceiver, type WebhookReceiver } from "../helpers/webhook-receiver.js";

/**
 * Red team, round 22: auto top-up (lib/topup, functions/auto-topup.ts, onPackInvoicePaid), from
 * the outside. Each test states the correct behaviour and failed on the code as it was handed over
 * (commit 8d5340a). Direct jobs first (runAutoTopUp with made-up crossings, no stream), then the
 * same wiring as `npm start`: the change stream, the top-up queue and the job runner.
 */
const fx = useBillingFixture({ stream: true });
const STARTER = catalog.packs.starter?.credits as number;


const { userWithCard, putAutoTopUp, getAutoTopUp, topUpState, setAvailable, deliverPaid, packGrants } = topUpKit(fx);
const settings = topUpSettings;
const settle = (ms = 750) => new Promise((resolve) => setTimeout(resolve, ms));

/** A user on (jobs run directly, not from the stream: the threshold is set while above it), then below it. */
async function below(label: string, extra: Parameters<typeof settings>[0] = {}) {
  const user = await userWithCard(label);
  await setAvailable(user.userId, 8_000, `${label}-${user.userId}-up`);
  expect((await putAutoTopUp(user.userId, settings(extra))).status).toBe(200);
  await setAvailable(user.userId, 1_000, `${label}-${user.userId}-down`);
  return user;
}

describe("a top-up in flight must end (direct jobs)", () => {
  it("the card it was begun with is removed (the user replaced it) while Stripe was failing: the redelivered job ends the top-up instead of throwing forever", async () => {
    const { userId, customer, card } = await below("rt22-detach");
    // pay answers 500: the job throws, the queue will deliver it again; the invoice is open
    fx.stripe.setPayOutcome("server_error", { customer, times: 1 });
    await expect(runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).rejects.toThrow();
    expect((await topUpState(userId))?.inFlight).toMatchObject({ seq: 1, paymentMethod: card });
    // meanwhile the user replaces the card (the billing portal detaches the old one)
    fx.stripe.detachPaymentMethod(card);
    fx.stripe.savePaymentMethod(customer, { default: true });
    // the redelivered job: Stripe answers 404 "No such PaymentMethod" to pay with the fixed card.
    // Correct: the top-up ends (charged to the saved card, or a failure like no_payment_method),
    // it does not throw on every receive until the dead-letter queue and stay in flight.
    const retried = await runAutoTopUp(fx.billing, { userId, crossing: "9000000001" }).catch((error: Error) => `threw: ${error.message}`);
    expect(String(typeof retried === "string" ? retried : "ended")).not.toMatch(/^threw/);
    expect((await topUpState(userId))?.inFlight).toBeUndefined();
    // and an hour later, the next crossing resuming the stale top-up does not fail the same way forever
    fx.clock.value += STALE_IN_FLIGHT_MS + 1;
    const later = await runAutoTopUp(fx.billing, { userId, crossing: "9000000002" }).catch((error: Error) => `threw: ${error.message}`);
    expect(String(typeof later === "string" ? later : "ended")).not.toMatch(/^threw/);
    expect((await getAutoTopUp(userId)).json.inFlight).toBe(false);
    expect(fx.stripe.chargesOf(customer)).toBeLessThanOrEqual(1);
  });

  it("turned off while its job awaits a retry: the retry does not leave the top-up in flight forever (and turning it on again can top up)", async () => {
    const { userId, customer } = await below("rt22-off-inflight");
    fx.stripe.setPayOutcome("server_error", { customer, times: 1 });
    await expect(runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).rejects.toThrow();
    // the user turns auto top-up off before the queue delivers the job again
    expect((await putAutoTopUp(userId, settings({ enabled: false }))).status).toBe(200);
    await runAutoTopUp(fx.billing, { userId, crossing: "9000000001" });
    // Correct: the retry finishes the top-up it began (or cancels it, voiding its invoice); either
    // way nothing stays in flight, and the month counts only a top-up that can still be paid.
    const off = await topUpState(userId);
    expect(off?.inFlight).toBeUndefined();
    const invoice = fx.stripe.invoicesOf(customer)[0] as { status: string };
    expect(off?.startedThisMonth).toBe(invoice.status === "void" ? 0 : 1);
    // the user turns it on again, still below the threshold: that is a crossing, and it is not
    // refused because of a top-up nobody will ever finish
    expect((await putAutoTopUp(userId, settings())).json.inFlight).toBe(false);
    const on = await runAutoTopUp(fx.billing, { userId, crossing: "9000000002" });
    expect(on).not.toEqual({ kind: "refused", reason: "inFlight" });
  });

  it("a payment still processing (a bank debit as the default for invoices) is not recorded as declined: when it is paid, the month counts it", async () => {
    const { userId, customer } = await below("rt22-processing", { monthlyLimit: 1 });
    // invoices.pay of a bank debit answers the invoice still open, its payment processing; the
    // port is the real one except that pay does what Stripe does then: nothing paid yet
    const stripe = fx.billing.stripe as NonNullable<typeof fx.billing.stripe>;
    const processing = { ...fx.billing, stripe: { ...stripe, payInvoice: async (id: string) => (await stripe.retrieveInvoice(id)) as NonNullable<Awaited<ReturnType<typeof stripe.retrieveInvoice>>> } };
    const first = await runAutoTopUp(processing, { userId, crossing: "9000000001" });
    const invoiceId = (first as { result: { invoiceId: string } }).result.invoiceId;
    expect(fx.stripe.invoices.get(invoiceId)?.status).toBe("open");
    // days later the debit succeeds: Stripe sends invoice.paid, the pack is granted
    fx.stripe.markInvoicePaid(invoiceId);
    await deliverPaid(invoiceId);
    expect((await packGrants(userId)).map((entry) => entry.amount)).toEqual([STARTER]);
    // Correct: that top-up was not a decline; it counts in the month (limit 1), so the next
    // crossing of the month is refused instead of charging a second pack
    const recorded = await topUpState(userId);
    await setAvailable(userId, 8_000, `processing-up-${userId}`);
    await setAvailable(userId, 1_000, `processing-down-${userId}`);
    await runAutoTopUp(fx.billing, { userId, crossing: "9000000002" });
    expect(fx.stripe.chargesOf(customer)).toBe(1);
    expect(recorded?.lastAttempt?.outcome).not.toBe("declined");
  });

  it("the third failure was 3-D Secure and the customer then paid it: GET does not say off for failures with 0 failures in a row", async () => {
    const { userId, customer } = await below("rt22-forgiven", { monthlyLimit: 10 });
    fx.stripe.setPayOutcome("requires_action", { customer });
    for (let crossing = 1; crossing <= TOP_UP_FAILURE_LIMIT; crossing++) {
      await runAutoTopUp(fx.billing, { userId, crossing: String(9000000000 + crossing) });
    }
    expect(await topUpState(userId)).toMatchObject({ failuresInARow: TOP_UP_FAILURE_LIMIT, disabledReason: "failures" });
    // the customer confirms the last one on its hosted page: invoice.paid forgives that failure
    const invoiceId = (await topUpState(userId))?.lastAttempt?.invoiceId as string;
    fx.stripe.markInvoicePaid(invoiceId);
    await deliverPaid(invoiceId);
    const view = (await getAutoTopUp(userId)).json;
    // Correct: one consistent story — either still off because of failures (and failures still at
    // the limit), or the forgiven failure undoes the switch-off; not "off for failures, 0 failures"
    const consistent = view.disabledReason === "failures" ? view.failuresInARow >= TOP_UP_FAILURE_LIMIT : view.enabled === true;
    expect(consistent, JSON.stringify(view)).toBe(true);
  });

  it("a deleted Stripe customer is a failure without a charge (no_payment_method), not a job that throws on every delivery", async () => {
    const { userId, customer } = await below("rt22-deleted-customer");
    // deleted in the Dashboard: retrieving it answers {deleted: true}, its payment methods 404
    fx.stripe.deleteCustomer(customer);
    const run = await runAutoTopUp(fx.billing, { userId, crossing: "9000000001" }).catch((error: Error) => `threw: ${error.message}`);
    expect(run).toEqual({ kind: "no_payment_method" });
    expect(await topUpState(userId)).toMatchObject({ failuresInARow: 1, lastAttempt: { outcome: "no_payment_method" } });
  });
});

describe("a one-off invoice grants a pack (onPackInvoicePaid)", () => {
  it("a pack bought through a payment link that also creates an invoice is granted once, not by checkout.session.completed and again by that invoice's invoice.paid", async () => {
    const userId = uniqueUser("rt22-link-invoice");
    const customer = await customerOf(fx, userId);
    const price = TEST_PRICES.STRIPE_PRICE_PACK_STARTER;
    const amount = 999; // the pack's price in cents (any)
    const paymentIntent = uniqueStripeId("pi");
    const invoiceId = uniqueStripeId("in");
    // a Dashboard payment link for the starter pack with "create an invoice" on: no pack in the
    // metadata (the pack is read from the session's line items), one payment, one invoice of it
    const session = { ...checkoutSession({ mode: "payment", customer, paymentStatus: "paid", paymentIntent, amountTotal: amount }), invoice: invoiceId };
    fx.stripe.sessionPrices.set(session.id, [price]);
    expect((await fx.deliver(officialEvent("checkout.session.completed", session))).json.outcome).toBe("pack_granted");
    const paid = await fx.deliver(invoiceEvent(topUpInvoice({ id: invoiceId, customer, price, amount })));
    expect(paid.status).toBe(200);
    // one payment of one pack: one pack's credits
    expect((await packGrants(userId)).map((entry) => entry.amount)).toEqual([STARTER]);
  });

  it("a top-up's invoice paid after the pack's price id was rotated (3-D Secure confirmed days later) grants the pack, or is parked; never acknowledged as ignored", async () => {
    const { userId, customer } = await below("rt22-rotated-price");
    fx.stripe.setPayOutcome("requires_action", { customer, times: 1 });
    const run = await runAutoTopUp(fx.billing, { userId, crossing: "9000000001" });
    const invoiceId = (run as { result: { invoiceId: string } }).result.invoiceId;
    // the operator moves the starter pack to a new Stripe price (prices are immutable: a price
    // change is a new id) while the invoice waits on its hosted page for the customer
    const original = fx.billing.prices;
    fx.billing.prices = createPriceBook({ ...TEST_PRICES, STRIPE_PRICE_PACK_STARTER: "price_pack_starter_v2" }, catalog);
    try {
      fx.stripe.markInvoicePaid(invoiceId);
      const paid = await deliverPaid(invoiceId);
      // Correct: our own invoice names its pack (metadata pack, autoTopUp): the customer paid for
      // it, so it is granted — or at least parked for a replay, not dropped as "ignored"
      expect(paid.json.outcome).toMatch(/^(pack_granted|parked_)/);
    } finally {
      fx.billing.prices = original;
    }
  });

  it("a top-up's invoice events do not speak for the subscription: a declined top-up is no subscription payment failure, a paid one does not clear the renewal's", async () => {
    const { userId, customer } = await below("rt22-payment-failed");
    const now = Math.floor(Date.now() / 1000);
    // a declined top-up: Stripe sends invoice.payment_failed for its one-off invoice
    fx.stripe.setPayOutcome("card_declined", { customer, times: 1 });
    const declined = await runAutoTopUp(fx.billing, { userId, crossing: "9000000001" });
    const declinedInvoice = (declined as { result: { invoiceId: string } }).result.invoiceId;
    await fx.deliver(invoiceEvent(fx.stripe.invoices.get(declinedInvoice) as object, { type: "invoice.payment_failed", created: now - 120 }));
    // Correct: GET /v1/credits' paymentFailedAt (and the app's subscription.payment_failed event)
    // is about the subscription; a pack that could not be bought is auto top-up's lastAttempt
    expect.soft((await getBalance(fx.deps.ledger, userId)).paymentFailedAt).toBeNull();

    // the subscription's renewal fails...
    const subscriptionId = uniqueStripeId("sub");
    const renewal = uniqueStripeId("in");
    const line = invoiceLine(renewal, { price: TEST_PRICES.STRIPE_PRICE_PLUS_MONTHLY, proration: false, amount: 1_900, period: { start: now, end: now + 30 * 86_400 }, subscription: subscriptionId });
    const failedRenewal = subscriptionInvoice({ id: renewal, customer, subscription: subscriptionId, billingReason: "subscription_cycle", status: "open", amountPaid: 0, amountDue: 1_900, lines: [line] });
    await fx.deliver(invoiceEvent(failedRenewal, { type: "invoice.payment_failed", created: now - 60 }));
    const failedAt = (await getBalance(fx.deps.ledger, userId)).paymentFailedAt;
    expect(failedAt).not.toBeNull();
    // ...then an auto top-up succeeds: its invoice.paid pays a pack, not the renewal
    const paid = await runAutoTopUp(fx.billing, { userId, crossing: "9000000002" });
    const paidInvoice = (paid as { result: { invoiceId: string } }).result.invoiceId;
    await fx.deliver(invoiceEvent(fx.stripe.invoices.get(paidInvoice) as object, { created: now }));
    expect((await getBalance(fx.deps.ledger, userId)).paymentFailedAt).toBe(failedAt);
  });
});

describe("through the change stream and the top-up queue", () => {
  let pipeline: EventsPipeline;
  beforeAll(async () => {
    pipeline = await startEventsPipeline({ tableName: fx.tableName, topUps: fx.billing });
  });
  afterAll(() => pipeline.stop());

  it(`a declining card: at most monthlyLimit + ${TOP_UP_FAILURE_LIMIT} off-session attempts a month, however often the user PUTs the setting again`, async () => {
    const { userId, customer } = await userWithCard("rt22-decline-loop");
    fx.stripe.setPayOutcome("card_declined", { customer });
    await setAvailable(userId, 1_000, `decline-loop-down-${userId}`);
    // the API alone: each PUT moves the threshold by one credit (a crossing while below), and
    // once failures turned it off, the same PUT turns it on again, which clears the failures
    for (let put = 0; put < 8; put++) {
      const before = (await topUpState(userId))?.seq ?? 0;
      expect((await putAutoTopUp(userId, settings({ threshold: 5_000 + put, monthlyLimit: 1 }))).status).toBe(200);
      await pipeline.events.caughtUp();
      await eventually(async () => {
        const state = await topUpState(userId);
        return (state?.seq ?? 0) > before && state?.inFlight === undefined;
      }, "the attempt", 10_000).catch(() => undefined);
    }
    // Correct: declined attempts are bounded within a month (a card-testing and issuer-fraud-flag
    // risk otherwise): with a limit of 1 top-up a month, not 8 declined charges on one card
    expect(fx.stripe.payAttempts(customer)).toBeLessThanOrEqual(1 + TOP_UP_FAILURE_LIMIT);
  }, 120_000);

  it("a top-up paid whose invoice.paid has not arrived yet covers the next dip: no second charge", async () => {
    const { userId, customer } = await userWithCard("rt22-pending-credits");
    await setAvailable(userId, 5_100, `pending-start-${userId}`);
    expect((await putAutoTopUp(userId, settings({ threshold: 5_000, monthlyLimit: 10 }))).status).toBe(200);
    // a request's hold takes 200 (crossing), the pack is paid at Stripe; its webhook is late
    await grantCredits(fx.deps.ledger, { userId, amount: -200, bucket: "allowance", reason: "admin", key: `pending-hold1-${userId}` });
    await pipeline.events.caughtUp();
    await eventually(async () => (await topUpState(userId))?.lastAttempt?.outcome === "succeeded", "the first top-up");
    expect(fx.stripe.chargesOf(customer)).toBe(1);
    // the hold is released (above again), the next request's hold takes it below again
    await grantCredits(fx.deps.ledger, { userId, amount: 200, bucket: "allowance", reason: "admin", key: `pending-release-${userId}` });
    await grantCredits(fx.deps.ledger, { userId, amount: -200, bucket: "allowance", reason: "admin", key: `pending-hold2-${userId}` });
    await pipeline.events.caughtUp();
    await eventually(async () => (await topUpState(userId))?.seq === 2, "a second top-up", 5_000).catch(() => undefined);
    await settle();
    // Correct: 50,000 credits already paid for are on their way; a dip of 100 below the threshold
    // is not worth a second pack. (Each further dip before the webhook would be another charge, up
    // to the month's limit: with the webhook endpoint down for an hour, monthlyLimit packs.)
    expect(fx.stripe.chargesOf(customer)).toBe(1);
    for (const invoice of fx.stripe.invoicesOf(customer)) if (invoice.status === "paid") await deliverPaid(String(invoice.id));
    expect((await packGrants(userId)).map((entry) => entry.amount)).toEqual([STARTER]);
    expect((await auditAccount(fx.deps.ledger, userId)).ok).toBe(true);
  }, 60_000);

  it("the month's limit pauses top-ups until the next month, not forever: below the threshold in the new month, the next change of the account tops up", async () => {
    const { userId, customer } = await userWithCard("rt22-next-month");
    expect((await putAutoTopUp(userId, settings({ threshold: 5_000, monthlyLimit: 1 }))).status).toBe(200);
    await setAvailable(userId, 1_000, `next-month-down1-${userId}`);
    await pipeline.events.caughtUp();
    await eventually(async () => (await topUpState(userId))?.lastAttempt?.outcome === "succeeded", "January's top-up");
    await deliverPaid(String(fx.stripe.invoicesOf(customer)[0]?.id));
    // spent down again in January: the limit (1) is reached, no charge, the crossing used up
    await setAvailable(userId, 1_000, `next-month-down2-${userId}`);
    await pipeline.events.caughtUp();
    await settle();
    expect(fx.stripe.chargesOf(customer)).toBe(1);
    // February: GET says on, 0 of 1 used, nothing in flight; the user keeps spending below the threshold
    fx.clock.value = Date.UTC(2026, 1, 1, 1);
    expect((await getAutoTopUp(userId)).json).toMatchObject({ enabled: true, startedThisMonth: 0, inFlight: false });
    await grantCredits(fx.deps.ledger, { userId, amount: -100, bucket: "allowance", reason: "admin", key: `next-month-spend-${userId}` });
    await pipeline.events.caughtUp();
    await eventually(async () => fx.stripe.chargesOf(customer) === 2, "February's top-up", 5_000).catch(() => undefined);
    // Correct: a top-up in February (monthlyLimit is per month); not never again until the user
    // happens to go above the threshold by other means
    expect(fx.stripe.chargesOf(customer)).toBe(2);
  }, 60_000);
});

describe("the app hears about its users' top-ups (outgoing webhooks)", () => {
  let pipeline: EventsPipeline;
  let receiver: WebhookReceiver;
  beforeAll(async () => {
    const secret = newWebhookSecret();
    receiver = await startWebhookReceiver({ secret });
    pipeline = await startEventsPipeline({ tableName: fx.tableName, endpoint: { url: receiver.url, secret }, topUps: fx.billing });
  });
  afterAll(async () => {
    await pipeline.stop();
    await receiver.stop();
  });

  it("a top-up that needs 3-D Secure is sent as topup.action_required with its invoice page, and the switch-off after the failures as topup.disabled (docs/auto-top-up.md, Outgoing events)", async () => {
    const { userId, customer } = await userWithCard("rt22-outgoing");
    fx.stripe.setPayOutcome("requires_action", { customer });
    expect((await putAutoTopUp(userId, settings({ threshold: 5_000, monthlyLimit: 10 }))).status).toBe(200);
    for (let crossing = 0; crossing < TOP_UP_FAILURE_LIMIT; crossing++) {
      await setAvailable(userId, 8_000, `outgoing-up-${crossing}-${userId}`);
      await setAvailable(userId, 1_000, `outgoing-down-${crossing}-${userId}`);
      await pipeline.events.caughtUp();
      await eventually(async () => (await topUpState(userId))?.seq === crossing + 1 && (await topUpState(userId))?.inFlight === undefined, "the attempt");
    }
    expect(await topUpState(userId)).toMatchObject({ disabledReason: "failures" });
    await pipeline.events.caughtUp();
    await eventually(() => [...receiver.accepted.values()].some((event) => event.data.userId === userId && event.type === "topup.disabled"), "topup.disabled", 10_000).catch(() => undefined);
    const types = [...receiver.accepted.values()].filter((event) => event.data.userId === userId).map((event) => event.type);
    // Correct: the only way the user learns there is a payment to confirm, and that auto top-up
    // turned itself off; without them top-ups stop with nobody told
    expect(types).toContain("topup.action_required");
    expect(types).toContain("topup.disabled");
  }, 60_000);
});
