import Stripe from "stripe";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { PINNED_API_VERSION, stripeClient } from "../../lib/billing/stripe-port.js";
import { startStripeServer, type StripeTestServer } from "../helpers/stripe-server.js";
import { invoiceEvent, officialInvoiceOf, topUpInvoice } from "../helpers/stripe-official.js";

/**
 * The loopback Stripe server's one-off invoices (auto top-up), driven through the real SDK: the
 * exact calls billing makes (customer, cards, draft invoice, invoice item, finalize, pay, void),
 * each pay outcome, Stripe's idempotent replay and its refusal of a key reused with other params.
 */

const PACK_PRICE = "price_pack_small";
const PACK_AMOUNT = 500;

let server: StripeTestServer;
let stripe: Stripe;

beforeAll(async () => {
  server = await startStripeServer({ unitAmounts: { [PACK_PRICE]: PACK_AMOUNT } });
  stripe = stripeClient("sk_test_stripe_server_topup", { apiBase: server.url, maxNetworkRetries: 0, timeoutMs: 2_000 });
});
afterAll(() => server.close());
beforeEach(() => server.reset());

let sequence = 0;
const key = (step: string, customer: string, n: number) => `topup:${customer}:${n}:${step}`;

/** A customer made through the API, with a saved card (the default one unless told). */
async function customerWithCard(options: { default?: boolean } = { default: true }) {
  const customer = await stripe.customers.create({ metadata: { userId: `user_${++sequence}` } });
  const card = server.savePaymentMethod(customer.id, options);
  return { customer: customer.id, card };
}

/** Steps 1–5: the card to charge, a draft invoice, its pack line, finalized. */
async function openTopUpInvoice(customer: string, n = 1) {
  const retrieved = await stripe.customers.retrieve(customer, {}, { idempotencyKey: key("customer", customer, n) });
  if (retrieved.deleted) throw new Error("deleted");
  let card = retrieved.invoice_settings.default_payment_method as string | null;
  if (!card) {
    const cards = await stripe.customers.listPaymentMethods(
      customer,
      { type: "card", limit: 1 },
      { idempotencyKey: key("cards", customer, n) },
    );
    card = cards.data[0]?.id ?? null;
  }
  if (!card) throw new Error("no card");
  const metadata = { userId: "user_x", autoTopUp: String(n), pack: "small" };
  const draft = await stripe.invoices.create(
    {
      customer,
      collection_method: "charge_automatically",
      auto_advance: false,
      pending_invoice_items_behavior: "exclude",
      default_payment_method: card,
      metadata,
    },
    { idempotencyKey: key("invoice", customer, n) },
  );
  const item = await stripe.invoiceItems.create(
    { customer, invoice: draft.id, pricing: { price: PACK_PRICE }, metadata },
    { idempotencyKey: key("item", customer, n) },
  );
  const open = await stripe.invoices.finalizeInvoice(draft.id as string, {}, { idempotencyKey: key("finalize", customer, n) });
  return { card, draft, item, open, metadata };
}

const pay = (invoice: string, customer: string, n = 1, params: Stripe.InvoicePayParams = { off_session: true }) =>
  stripe.invoices.pay(invoice, params, { idempotencyKey: key("pay", customer, n) });

async function payError(invoice: string, customer: string, n = 1, params?: Stripe.InvoicePayParams) {
  try {
    await pay(invoice, customer, n, params);
  } catch (error) {
    return error as Stripe.errors.StripeError;
  }
  throw new Error("pay succeeded");
}

describe("stripe test server: one-off (top-up) invoices through the SDK", () => {
  it("retrieves a customer's default card, or lists its cards newest first", async () => {
    const { customer, card } = await customerWithCard();
    const retrieved = await stripe.customers.retrieve(customer);
    expect(retrieved.deleted).toBeUndefined();
    expect((retrieved as Stripe.Customer).invoice_settings.default_payment_method).toBe(card);

    const other = await customerWithCard({ default: false });
    const older = other.card;
    const newer = server.savePaymentMethod(other.customer);
    const none = (await stripe.customers.retrieve(other.customer)) as Stripe.Customer;
    expect(none.invoice_settings.default_payment_method).toBeNull();
    const page = await stripe.customers.listPaymentMethods(other.customer, { type: "card", limit: 1 });
    expect(page).toMatchObject({ object: "list", has_more: true });
    expect(page.data).toHaveLength(1);
    expect(page.data[0]).toMatchObject({ id: newer, object: "payment_method", type: "card", customer: other.customer });
    expect(page.data[0]?.card).toMatchObject({ brand: "visa", last4: "4242" });
    const all = await stripe.customers.listPaymentMethods(other.customer, { type: "card" });
    expect(all.data.map((pm) => pm.id)).toEqual([newer, older]);

    // a customer made elsewhere (seeded by a test) exists, without cards
    const seeded = (await stripe.customers.retrieve("cus_seeded_elsewhere")) as Stripe.Customer;
    expect(seeded.invoice_settings.default_payment_method).toBeNull();
    expect((await stripe.customers.listPaymentMethods("cus_seeded_elsewhere", { type: "card", limit: 1 })).data).toEqual([]);

    server.deleteCustomer(other.customer);
    expect(await stripe.customers.retrieve(other.customer)).toMatchObject({ id: other.customer, deleted: true });
  });

  it("makes a draft, adds the pack line, finalizes, pays (succeeded)", async () => {
    const { customer, card } = await customerWithCard();
    const { draft, item, open, metadata } = await openTopUpInvoice(customer);
    expect(draft).toMatchObject({
      object: "invoice",
      status: "draft",
      customer,
      parent: null,
      amount_due: 0,
      currency: "usd",
      hosted_invoice_url: null,
      collection_method: "charge_automatically",
      auto_advance: false,
      default_payment_method: card,
      metadata,
    });
    expect(draft.lines.data).toEqual([]);
    expect(item).toMatchObject({ object: "invoiceitem", invoice: draft.id, amount: PACK_AMOUNT, customer, metadata });

    expect(open.status).toBe("open");
    expect(open.amount_due).toBe(PACK_AMOUNT);
    expect(open.hosted_invoice_url).toBe(`${server.url}/hosted/invoices/${draft.id}`);
    expect(open.lines.data).toHaveLength(1);
    expect(open.lines.data[0]).toMatchObject({
      amount: PACK_AMOUNT,
      currency: "usd",
      metadata,
      pricing: { type: "price_details", price_details: { price: PACK_PRICE, product: `prod_${PACK_PRICE}` } },
      parent: { type: "invoice_item_details", invoice_item_details: { invoice_item: item.id, proration: false } },
    });

    const paid = await pay(draft.id as string, customer);
    expect(paid).toMatchObject({ id: draft.id, status: "paid", amount_paid: PACK_AMOUNT, amount_remaining: 0 });
    expect(paid.status_transitions.paid_at).toEqual(expect.any(Number));
    const paymentIntent = server.paymentIntentOf(draft.id as string) as string;
    expect(paymentIntent).toMatch(/^pi_/);
    const payments = await stripe.invoicePayments.list({ payment: { type: "payment_intent", payment_intent: paymentIntent } });
    expect(payments.data[0]?.invoice).toBe(draft.id);

    expect((await stripe.invoices.retrieve(draft.id as string)).status).toBe("paid");
    expect(server.invoices.get(draft.id as string)?.status).toBe("paid");
    expect(server.payAttempts(customer)).toBe(1);
    expect(server.chargesOf(customer)).toBe(1);
    expect(server.invoicesCreated(customer)).toBe(1);
    expect(server.invoicesOf(customer).map((invoice) => invoice.id)).toEqual([draft.id]);
    // every call of the sequence carried its key
    const sequenceCalls = server.requests.filter((request) => !(request.method === "POST" && request.path === "/v1/customers"));
    expect(sequenceCalls.slice(0, 5).map((request) => [request.method, request.path, request.idempotencyKey])).toEqual([
      ["GET", `/v1/customers/${customer}`, key("customer", customer, 1)],
      ["POST", "/v1/invoices", key("invoice", customer, 1)],
      ["POST", "/v1/invoiceitems", key("item", customer, 1)],
      ["POST", `/v1/invoices/${draft.id}/finalize`, key("finalize", customer, 1)],
      ["POST", `/v1/invoices/${draft.id}/pay`, key("pay", customer, 1)],
    ]);
    expect(server.requestsTo(`/v1/invoices/${draft.id}/pay`, "POST")[0]?.body).toEqual({ off_session: "true" });
  });

  it("a price without a unit amount is 1,500; a price-less item is refused", async () => {
    const { customer } = await customerWithCard();
    const draft = await stripe.invoices.create({ customer, auto_advance: false });
    await stripe.invoiceItems.create({ customer, invoice: draft.id, pricing: { price: "price_unknown" } });
    expect((await stripe.invoices.finalizeInvoice(draft.id as string)).amount_due).toBe(1_500);
    await expect(stripe.invoiceItems.create({ customer, invoice: draft.id, pricing: { price: PACK_PRICE } })).rejects.toMatchObject({
      statusCode: 400,
      code: "invoice_not_editable",
    });
  });

  it("requires_action: 402 invoice_payment_intent_requires_action, the invoice stays open; the customer can pay it hosted", async () => {
    const { customer } = await customerWithCard();
    server.setPayOutcome("requires_action", { customer });
    const { open } = await openTopUpInvoice(customer);
    const error = await payError(open.id as string, customer);
    expect(error).toBeInstanceOf(Stripe.errors.StripeCardError);
    expect(error).toMatchObject({ statusCode: 402, type: "StripeCardError", code: "invoice_payment_intent_requires_action" });
    expect((error.raw as { payment_intent?: { status?: string } }).payment_intent?.status).toBe("requires_action");
    const stored = await stripe.invoices.retrieve(open.id as string);
    expect(stored).toMatchObject({ status: "open", amount_paid: 0, hosted_invoice_url: open.hosted_invoice_url });
    expect(server.chargesOf(customer)).toBe(0);

    // the same key replays the first answer (Stripe keeps 4xx answers)
    await expect(pay(open.id as string, customer)).rejects.toMatchObject({ code: "invoice_payment_intent_requires_action" });
    expect(server.payAttempts(customer)).toBe(2);

    expect(server.markInvoicePaid(open.id as string).status).toBe("paid");
    expect(server.chargesOf(customer)).toBe(1);
    expect(server.paymentIntentOf(open.id as string)).toMatch(/^pi_/);
  });

  it("card_declined: 402 card_declined / generic_decline, the invoice stays open and can be voided", async () => {
    const { customer } = await customerWithCard();
    server.setPayOutcome("card_declined", { customer });
    const { open } = await openTopUpInvoice(customer);
    const error = await payError(open.id as string, customer);
    expect(error).toBeInstanceOf(Stripe.errors.StripeCardError);
    expect(error).toMatchObject({ statusCode: 402, code: "card_declined", decline_code: "generic_decline" });
    expect((await stripe.invoices.retrieve(open.id as string)).status).toBe("open");

    const voided = await stripe.invoices.voidInvoice(open.id as string, {}, { idempotencyKey: key("void", customer, 1) });
    expect(voided.status).toBe("void");
    expect(voided.status_transitions.voided_at).toEqual(expect.any(Number));
    // only an open invoice is voided, and a void one is not paid
    await expect(stripe.invoices.voidInvoice(open.id as string)).rejects.toMatchObject({ statusCode: 400 });
    await expect(pay(open.id as string, customer, 2)).rejects.toMatchObject({ statusCode: 400 });
    expect(server.chargesOf(customer)).toBe(0);
  });

  it("server_error: 500, nothing changes; like Stripe, the same key gets the 500 again (and the SDK is told not to retry it), another key is tried afresh", async () => {
    const { customer } = await customerWithCard();
    server.setPayOutcome("server_error", { customer, times: 1 });
    const { open } = await openTopUpInvoice(customer);
    const error = await payError(open.id as string, customer);
    expect(error).toBeInstanceOf(Stripe.errors.StripeAPIError);
    expect(error.statusCode).toBe(500);
    expect(server.payAttempts(customer)).toBe(1); // stripe-should-retry: false, so the SDK's retries stay unused
    expect((await stripe.invoices.retrieve(open.id as string)).status).toBe("open");
    // the same request under the same key: the kept 500, although the next outcome would pay
    const replayed = await payError(open.id as string, customer);
    expect(replayed.statusCode).toBe(500);
    expect((await stripe.invoices.retrieve(open.id as string)).status).toBe("open");
    // another key: times: 1 was used, so the default outcome (succeeded)
    expect((await pay(open.id as string, customer, 2)).status).toBe("paid");
    expect(server.payAttempts(customer)).toBe(3);
    expect(server.chargesOf(customer)).toBe(1);
  });

  it("timeout_after_acting: paid, the caller hears nothing; the same request replays the paid invoice", async () => {
    const { customer } = await customerWithCard();
    server.setPayOutcome("timeout_after_acting", { customer, times: 1 });
    const { open } = await openTopUpInvoice(customer);
    const error = await payError(open.id as string, customer);
    expect(error).toBeInstanceOf(Stripe.errors.StripeConnectionError);
    expect(server.served.hangUps).toBe(1);
    expect(server.invoices.get(open.id as string)?.status).toBe("paid");
    expect(server.chargesOf(customer)).toBe(1);

    const replayed = await pay(open.id as string, customer);
    expect(replayed).toMatchObject({ id: open.id, status: "paid", amount_paid: PACK_AMOUNT });
    expect(replayed.lastResponse.headers["idempotent-replayed"]).toBe("true");
    expect(server.payAttempts(customer)).toBe(2);
    expect(server.chargesOf(customer)).toBe(1);
    // a new key on a paid invoice is refused
    await expect(pay(open.id as string, customer, 2)).rejects.toMatchObject({ statusCode: 400, message: "Invoice is already paid" });
  });

  it("refuses a key reused with other parameters (400 idempotency_error), replays one reused with the same", async () => {
    const { customer, card } = await customerWithCard();
    const params = { customer, auto_advance: false, default_payment_method: card, metadata: { autoTopUp: "7" } };
    const first = await stripe.invoices.create(params, { idempotencyKey: "topup-create-7" });
    const again = await stripe.invoices.create(params, { idempotencyKey: "topup-create-7" });
    expect(again.id).toBe(first.id);
    const error = await stripe.invoices
      .create({ ...params, metadata: { autoTopUp: "8" } }, { idempotencyKey: "topup-create-7" })
      .catch((caught: unknown) => caught as Stripe.errors.StripeError);
    expect(error).toBeInstanceOf(Stripe.errors.StripeIdempotencyError);
    expect((error as Stripe.errors.StripeError).statusCode).toBe(400);
    expect(server.served.idempotencyErrors).toBe(1);
    expect(server.invoicesCreated(customer)).toBe(1);

    // pay with the key of the create: another endpoint, refused too
    await expect(stripe.invoices.pay(first.id as string, { off_session: true }, { idempotencyKey: "topup-create-7" })).rejects.toBeInstanceOf(
      Stripe.errors.StripeIdempotencyError,
    );
  });

  it("pay outcomes: queued for the next N attempts, per customer or for everyone, before the lasting defaults", async () => {
    const a = await customerWithCard();
    const b = await customerWithCard();
    server.setPayOutcome("card_declined"); // everyone, lasting
    server.setPayOutcome("succeeded", { customer: a.customer }); // a, lasting
    server.setPayOutcome("requires_action", { times: 1 }); // anyone's next attempt
    server.setPayOutcome("server_error", { customer: b.customer, times: 1 }); // b's next attempt

    const outcome = async (customer: string, n: number) => {
      const { open } = await openTopUpInvoice(customer, n);
      try {
        return (await pay(open.id as string, customer, n)).status;
      } catch (error) {
        return (error as Stripe.errors.StripeError).code ?? (error as Stripe.errors.StripeError).type;
      }
    };
    expect(await outcome(b.customer, 1)).toBe("StripeAPIError"); // b's queued
    expect(await outcome(a.customer, 1)).toBe("invoice_payment_intent_requires_action"); // anyone's queued
    expect(await outcome(a.customer, 2)).toBe("paid"); // a's default
    expect(await outcome(b.customer, 2)).toBe("card_declined"); // the default
    expect(server.invoicesCreated(a.customer)).toBe(2);
    expect(server.payAttempts(a.customer)).toBe(2);
    expect(server.chargesOf(a.customer)).toBe(1);
    expect(server.chargesOf(b.customer)).toBe(0);

    server.reset();
    expect(await outcome(b.customer, 3)).toBe("paid");
  });

  it("pays with the invoice's or the customer's default card; refuses a card of another customer or none", async () => {
    const { customer } = await customerWithCard({ default: false });
    const other = await customerWithCard();
    await expect(stripe.invoices.create({ customer, default_payment_method: other.card })).rejects.toMatchObject({
      statusCode: 404,
      code: "resource_missing",
    });
    const draft = await stripe.invoices.create({ customer, auto_advance: false });
    await stripe.invoiceItems.create({ customer, invoice: draft.id, pricing: { price: PACK_PRICE } });
    // no default card anywhere: refused (the invoice is finalized, as Stripe finalizes a draft it is asked to pay)
    await expect(stripe.invoices.pay(draft.id as string, { off_session: true })).rejects.toMatchObject({ statusCode: 400 });
    expect(server.chargesOf(customer)).toBe(0);
    const card = (await stripe.customers.listPaymentMethods(customer, { type: "card", limit: 1 })).data[0]?.id as string;
    const paid = await stripe.invoices.pay(draft.id as string, { off_session: true, payment_method: card });
    expect(paid.status).toBe("paid");
  });

  it("checkout: setup-mode sessions, and payment sessions saving the card for off-session use", async () => {
    const { customer } = await customerWithCard();
    const setup = await stripe.checkout.sessions.create({
      mode: "setup",
      customer,
      currency: "usd",
      success_url: "https://app.example.com/ok",
      cancel_url: "https://app.example.com/cancel",
      metadata: { userId: "user_1", purpose: "auto_top_up" },
    });
    expect(setup).toMatchObject({ object: "checkout.session", mode: "setup", customer, metadata: { purpose: "auto_top_up" } });
    expect(setup.id).toMatch(/^cs_test_setup/);
    expect(setup.url).toMatch(/^https:\/\//);
    await expect(
      stripe.checkout.sessions.create({ mode: "setup", customer, success_url: "https://app.example.com/ok" }),
    ).rejects.toMatchObject({ statusCode: 400, code: "parameter_missing" });

    const payment = await stripe.checkout.sessions.create({
      mode: "payment",
      customer,
      line_items: [{ price: PACK_PRICE, quantity: 1 }],
      payment_intent_data: { setup_future_usage: "off_session" },
      success_url: "https://app.example.com/ok",
      cancel_url: "https://app.example.com/cancel",
    });
    expect(payment.mode).toBe("payment");
    expect(server.sessionPrices.get(payment.id)).toEqual([PACK_PRICE]);
    expect(server.requestsTo("/v1/checkout/sessions", "POST").at(-1)?.body.payment_intent_data).toEqual({
      setup_future_usage: "off_session",
    });
  });

  it("builds the invoice.paid event of a stored top-up invoice from the official objects", async () => {
    const { customer } = await customerWithCard();
    const { open, metadata } = await openTopUpInvoice(customer);
    await pay(open.id as string, customer);
    const stored = server.invoices.get(open.id as string);
    const event = invoiceEvent(stored);
    expect(event).toMatchObject({
      object: "event",
      type: "invoice.paid",
      api_version: PINNED_API_VERSION,
      livemode: false,
      pending_webhooks: 1,
      request: { id: null, idempotency_key: null },
    });
    expect(event.id).toMatch(/^evt_/);
    const invoice = event.data.object;
    expect(invoice).toMatchObject({
      id: open.id,
      customer,
      status: "paid",
      amount_due: PACK_AMOUNT,
      amount_paid: PACK_AMOUNT,
      amount_remaining: 0,
      total: PACK_AMOUNT,
      parent: null,
      metadata,
      billing_reason: "manual",
    });
    expect(invoice.lines.data).toHaveLength(1);
    expect(invoice.lines.data[0]).toMatchObject({
      amount: PACK_AMOUNT,
      pricing: { type: "price_details", price_details: { price: PACK_PRICE } },
      parent: { type: "invoice_item_details", subscription_item_details: null, invoice_item_details: { proration: false } },
    });
    // the event is a copy: the stored invoice is left alone
    invoice.status = "void";
    expect(server.invoices.get(open.id as string)?.status).toBe("paid");

    // the same shape without the server
    const built = topUpInvoice({ customer, price: PACK_PRICE, amount: PACK_AMOUNT, metadata });
    expect(built).toMatchObject({ status: "paid", amount_paid: PACK_AMOUNT, parent: null, metadata });
    expect(Object.keys(built).sort()).toEqual(Object.keys(officialInvoiceOf(stored)).sort());
    expect(invoiceEvent(built).data.object.lines.data[0].pricing.price_details.price).toBe(PACK_PRICE);
  });

  it("proration invoices still work alongside, and GET /v1/invoices/:id serves them", async () => {
    const { customer } = await customerWithCard();
    server.subscriptions.set("sub_topup_test", {
      id: "sub_topup_test",
      object: "subscription",
      customer,
      metadata: {},
      items: {
        data: [{ id: "si_1", price: { id: "price_a" }, current_period_start: 1_000, current_period_end: 2_000_000_000 }],
      },
    });
    const updated = await stripe.subscriptions.update("sub_topup_test", {
      items: [{ id: "si_1", price: "price_b" }],
      proration_behavior: "always_invoice",
    });
    const invoiceId = updated.latest_invoice as string;
    expect((await stripe.invoices.retrieve(invoiceId)).billing_reason).toBe("subscription_update");
    expect(server.invoicesCreated(customer)).toBe(0);
    expect(invoiceEvent(server.invoices.get(invoiceId)).data.object.parent).toMatchObject({
      type: "subscription_details",
      subscription_details: { subscription: "sub_topup_test" },
    });
  });
});
