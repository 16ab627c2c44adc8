import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { catalog } from "../../lib/catalog.js";
import { auditAccount, getBalance, grantCredits } from "../../lib/ledger/index.js";
import { TOP_UP_FAILURE_LIMIT } from "../../lib/topup/model.js";
import { runAutoTopUp } from "../../lib/topup/run.js";
import { UpstreamError } from "../../lib/errors.js";
import { PaymentFailedError, type StripePort } from "../../lib/billing/stripe-port.js";
import { customerOf, TEST_PRICES, useBillingFixture } from "../helpers/billing.js";
import { type EventsPipeline, eventually, startEventsPipeline } from "../helpers/events-pipeline.js";
import { uniqueUser } from "../helpers/ledger.js";
import { topUpKit, topUpSettings } from "../helpers/topup.js";

/**
 * Auto top-up against DynamoDB Local and the loopback Stripe server (the real SDK): the API that
 * turns it on, each way a charge can end (paid, needs the customer, declined, Stripe failing, Stripe
 * acting without answering), credits only from `invoice.paid`, and — through the change stream, the
 * top-up queue and the job runner as `npm start` wires them — the peers' runaway bugs as
 * regression tests: many settles crossing at once, a card that always declines, a threshold one
 * pack cannot lift, the monthly limit.
 */
const fx = useBillingFixture({ stream: true });
const STARTER = catalog.packs.starter?.credits as number;
const SIGNUP = catalog.signupBonus;

let pipeline: EventsPipeline;
beforeAll(async () => {
  pipeline = await startEventsPipeline({ tableName: fx.tableName, topUps: fx.billing });
});
afterAll(() => pipeline.stop());

const { userWithCard, putAutoTopUp, topUpState, setAvailable, deliverPaid, packGrants } = topUpKit(fx);
const settings = topUpSettings;

describe("turning it on", () => {
  it("needs a saved card: 409 PAYMENT_METHOD_REQUIRED, and POST /v1/billing/payment-method starts a setup Checkout", async () => {
    const userId = uniqueUser("topup-nocard");
    await customerOf(fx, userId);
    const refused = await putAutoTopUp(userId, settings());
    expect(refused.status).toBe(409);
    expect(refused.json.error.reason).toBe("PAYMENT_METHOD_REQUIRED");
    const setup = await fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/payment-method");
    expect(setup.status).toBe(200);
    expect(setup.json.checkoutUrl).toMatch(/^https?:\/\//);
    const session = fx.stripe.requestsTo("/v1/checkout/sessions", "POST").at(-1);
    expect(session?.body.mode).toBe("setup");
    // still off: nothing was written
    expect((await fx.asUser(fx.fns.subscribe.route, userId, "GET /v1/billing/auto-topup")).json.enabled).toBe(false);
  });

  it("with a card: on, shown by GET; the account carries the threshold for the change stream", async () => {
    const { userId } = await userWithCard("topup-on");
    const answer = await putAutoTopUp(userId, settings({ threshold: 2_000 }));
    expect(answer.status).toBe(200);
    expect(answer.json).toMatchObject({ enabled: true, threshold: 2_000, pack: "starter", monthlyLimit: 5, failuresInARow: 0, inFlight: false, lastAttempt: null });
    const account = (await fx.deps.ledger.store.getAccount(userId)) as unknown as { autoTopUpBelow?: number };
    expect(account.autoTopUpBelow).toBe(2_000);
    await putAutoTopUp(userId, settings({ enabled: false, threshold: 2_000 }));
    const off = (await fx.deps.ledger.store.getAccount(userId)) as unknown as { autoTopUpBelow?: number };
    expect(off.autoTopUpBelow).toBeUndefined();
  });

  it("refuses what is not a setting: unknown packs, a zero threshold, a limit of 0 or above 100, unknown fields", async () => {
    const { userId } = await userWithCard("topup-bad");
    for (const body of [settings({ pack: "gold" }), settings({ threshold: 0 }), settings({ monthlyLimit: 0 }), settings({ monthlyLimit: 101 }), { ...settings(), extra: 1 }, { enabled: true }]) {
      expect((await putAutoTopUp(userId, body)).status, JSON.stringify(body)).toBe(400);
    }
  });
});

describe("one top-up, each way its charge can end (jobs run directly)", () => {
  /** A user on, below the threshold, and a job for a crossing. */
  async function below(label: string, extra: Parameters<typeof settings>[0] = {}) {
    const user = await userWithCard(label);
    expect((await putAutoTopUp(user.userId, settings(extra))).status).toBe(200);
    await setAvailable(user.userId, 1_000, `${label}-spend`);
    return user;
  }

  it("paid: one invoice for the pack's price, charged once; the credits come from invoice.paid, once", async () => {
    const { userId, customer } = await below("topup-paid");
    const run = await runAutoTopUp(fx.billing, { userId, crossing: "9000000001" });
    expect(run).toMatchObject({ kind: "charged", result: { outcome: "succeeded" } });
    expect(fx.stripe.chargesOf(customer)).toBe(1);
    // biome-ignore lint/suspicious/noExplicitAny: a Stripe invoice as the server holds it
    const invoice = fx.stripe.invoicesOf(customer)[0] as any;
    expect(invoice?.lines.data[0].pricing.price_details.price).toBe(TEST_PRICES.STRIPE_PRICE_PACK_STARTER);
    expect(invoice?.metadata).toMatchObject({ userId, autoTopUp: "1", pack: "starter" });
    // no credit before Stripe says paid
    expect(await packGrants(userId)).toEqual([]);
    expect((await deliverPaid(invoice?.id)).json.outcome).toBe("pack_granted");
    expect((await deliverPaid(invoice?.id)).status).toBe(200); // a redelivery grants nothing more
    const grants = await packGrants(userId);
    expect(grants.map((entry) => entry.amount)).toEqual([STARTER]);
    expect((await getBalance(fx.deps.ledger, userId)).available).toBe(1_000 + STARTER);
    const state = await topUpState(userId);
    expect(state).toMatchObject({ seq: 1, startedThisMonth: 1, failuresInARow: 0, lastAttempt: { outcome: "succeeded", invoiceId: invoice?.id } });
    expect(state?.inFlight).toBeUndefined();
    // the same crossing again (a redelivered job) is used up: no second charge
    expect(await runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).toEqual({ kind: "refused", reason: "seenCrossing" });
    expect(fx.stripe.chargesOf(customer)).toBe(1);
    expect((await auditAccount(fx.deps.ledger, userId)).ok).toBe(true);
  });

  it("needs the customer (3-D Secure): stopped with the invoice page to confirm on, a failure; paid later there, credited then", async () => {
    const { userId, customer } = await below("topup-3ds");
    fx.stripe.setPayOutcome("requires_action", { customer, times: 1 });
    const run = await runAutoTopUp(fx.billing, { userId, crossing: "9000000001" });
    expect(run).toMatchObject({ kind: "charged", result: { outcome: "action_required" } });
    const state = await topUpState(userId);
    expect(state?.lastAttempt?.outcome).toBe("action_required");
    expect(state?.lastAttempt?.actionUrl).toMatch(/\/hosted\/invoices\//);
    expect(state?.failuresInARow).toBe(1);
    expect(fx.stripe.chargesOf(customer)).toBe(0);
    expect(await packGrants(userId)).toEqual([]);
    // the customer confirms on the hosted page: Stripe sends invoice.paid, the pack is granted
    const invoiceId = state?.lastAttempt?.invoiceId as string;
    fx.stripe.markInvoicePaid(invoiceId);
    await deliverPaid(invoiceId);
    expect((await packGrants(userId)).map((entry) => entry.amount)).toEqual([STARTER]);
    expect(await topUpState(userId)).toMatchObject({ failuresInARow: 0, lastAttempt: { outcome: "succeeded" } });
  });

  it("declined: a failure, the invoice voided, no credit, and not counted in the month", async () => {
    const { userId, customer } = await below("topup-declined");
    fx.stripe.setPayOutcome("card_declined", { customer, times: 1 });
    const run = await runAutoTopUp(fx.billing, { userId, crossing: "9000000001" });
    expect(run).toMatchObject({ kind: "charged", result: { outcome: "declined" } });
    const invoiceId = String(fx.stripe.invoicesOf(customer)[0]?.id);
    expect(fx.stripe.invoices.get(invoiceId)?.status).toBe("void");
    expect(await topUpState(userId)).toMatchObject({ failuresInARow: 1, startedThisMonth: 0, lastAttempt: { outcome: "declined" } });
    expect(await packGrants(userId)).toEqual([]);
  });

  it("Stripe failing (5xx): the job throws to be tried again; the retry pays the same open invoice under a key of its own (Stripe replays a 500 to its key for 24 hours) and charges once", async () => {
    const { userId, customer } = await below("topup-5xx");
    fx.stripe.setPayOutcome("server_error", { customer, times: 2 });
    await expect(runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).rejects.toThrow();
    expect(await topUpState(userId)).toMatchObject({ inFlight: { seq: 1, payFailures: 1 } });
    await expect(runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).rejects.toThrow(); // the second 500
    expect(await topUpState(userId)).toMatchObject({ inFlight: { seq: 1, payFailures: 2 } });
    const retried = await runAutoTopUp(fx.billing, { userId, crossing: "9000000001" });
    expect(retried).toMatchObject({ kind: "charged", seq: 1, result: { outcome: "succeeded" } });
    const invoiceId = String(fx.stripe.invoicesOf(customer)[0]?.id);
    const pays = fx.stripe.requestsTo(`/v1/invoices/${invoiceId}/pay`, "POST");
    expect(pays).toHaveLength(3);
    expect(new Set(pays.map((request) => request.idempotencyKey)).size).toBe(3);
    expect(fx.stripe.invoicesCreated(customer)).toBe(1);
    expect(fx.stripe.chargesOf(customer)).toBe(1);
    expect((await topUpState(userId))?.inFlight).toBeUndefined();
  });

  /** The billing deps with some of the Stripe port's calls replaced; the rest go to the loopback server. */
  const withStripe = (replace: (stripe: StripePort) => Partial<StripePort>) => {
    const stripe = fx.billing.stripe as StripePort;
    return { ...fx.billing, stripe: { ...stripe, ...replace(stripe) } };
  };

  for (const [step, fault] of [
    ["invoices.create", { match: "/v1/invoices", method: "POST" }],
    ["invoiceItems.create", { match: "/v1/invoiceitems", method: "POST" }],
    ["invoices.finalizeInvoice", { match: "/v1/invoices/", method: "POST" }],
  ] as const) {
    it(`a 5xx answer to ${step}, which Stripe keeps for its key: the retry makes a new invoice under keys of its own, pays it once, and the other is never paid`, async () => {
      const { userId, customer } = await below(`topup-remake-${step}`);
      fx.stripe.failNext({ ...fault, status: 500, keep: true });
      await expect(runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).rejects.toThrow();
      expect(await topUpState(userId)).toMatchObject({ inFlight: { seq: 1, invoiceFailures: 1 } });
      expect((await topUpState(userId))?.inFlight?.invoiceId).toBeUndefined();
      const retried = await runAutoTopUp(fx.billing, { userId, crossing: "9000000001" });
      expect(retried).toMatchObject({ kind: "charged", seq: 1, result: { outcome: "succeeded" } });
      expect(fx.stripe.chargesOf(customer)).toBe(1);
      // biome-ignore lint/suspicious/noExplicitAny: Stripe invoices as the server holds them
      const invoices = fx.stripe.invoicesOf(customer) as any[];
      const paid = invoices.filter((invoice) => invoice.status === "paid");
      expect(paid).toHaveLength(1);
      expect(paid[0]?.lines.data).toHaveLength(1);
      expect((await topUpState(userId))?.lastAttempt).toMatchObject({ outcome: "succeeded", invoiceId: paid[0]?.id });
      // the first try's invoice, if it made one, is a draft or open one nobody collects
      for (const other of invoices.filter((invoice) => invoice.id !== paid[0]?.id)) expect(["draft", "open"]).toContain(other.status);
      const created = fx.stripe.requestsTo("/v1/invoices", "POST").filter((request) => request.path === "/v1/invoices");
      expect(created.at(-1)?.idempotencyKey).toMatch(new RegExp(`^creditgate:topup:${userId}:1:remake:1:invoice:`));
      expect((await deliverPaid(paid[0]?.id)).json.outcome).toBe("pack_granted");
      expect((await packGrants(userId)).map((entry) => entry.amount)).toEqual([STARTER]);
    });
  }

  it("the invoice's calls keep their keys after a timeout (Stripe then answers the first call): one invoice", async () => {
    const { userId, customer } = await below("topup-remake-timeout");
    const intents: string[] = [];
    const billing = withStripe((stripe) => ({
      createOneOffInvoice: async (...args: Parameters<StripePort["createOneOffInvoice"]>) => {
        intents.push(args[1]);
        const made = await stripe.createOneOffInvoice(...args);
        if (intents.length === 1) throw new UpstreamError("timed out", true); // made, and no answer heard
        return made;
      },
    }));
    await expect(runAutoTopUp(billing, { userId, crossing: "9000000001" })).rejects.toThrow("timed out");
    expect((await topUpState(userId))?.inFlight?.invoiceFailures).toBeUndefined();
    expect(await runAutoTopUp(billing, { userId, crossing: "9000000001" })).toMatchObject({ kind: "charged", result: { outcome: "succeeded" } });
    expect(intents[1]).toBe(intents[0]);
    expect(fx.stripe.invoicesCreated(customer)).toBe(1);
    expect(fx.stripe.chargesOf(customer)).toBe(1);
  });

  it("two deliveries of a job making invoices under different tries' keys: the first recorded is paid, the other voided, one charge", async () => {
    const { userId, customer } = await below("topup-remake-race");
    // the first delivery hears a 5xx (not kept: before Stripe ran it), so the next try has keys of its own
    fx.stripe.failNext({ match: "/v1/invoices", method: "POST", status: 500 });
    await expect(runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).rejects.toThrow();
    expect((await topUpState(userId))?.inFlight?.invoiceFailures).toBe(1);
    // Two deliveries at once: one under the second try's keys records its invoice; the other, under
    // the first try's keys (it read the top-up before the count moved), makes its invoice after that
    // and before the first pays.
    let staleDone: Promise<unknown> = Promise.resolve();
    const fresh = withStripe((stripe) => ({
      payInvoice: async (...args: Parameters<StripePort["payInvoice"]>) => {
        await staleDone;
        return stripe.payInvoice(...args);
      },
    }));
    const stale = withStripe((stripe) => ({
      createOneOffInvoice: async (input: Parameters<StripePort["createOneOffInvoice"]>[0], intent: string) => {
        await eventually(async () => (await topUpState(userId))?.inFlight?.invoiceId !== undefined, "the other delivery's invoice recorded", 10_000);
        return stripe.createOneOffInvoice(input, intent.replace(/:remake:1$/, ""));
      },
    }));
    const freshRun = runAutoTopUp(fresh, { userId, crossing: "9000000001" });
    const staleRun = runAutoTopUp(stale, { userId, crossing: "9000000001" });
    staleDone = staleRun.catch(() => undefined);
    const runs = await Promise.all([freshRun, staleRun]);
    expect(runs).toMatchObject([{ kind: "charged", result: { outcome: "succeeded" } }, { kind: "charged", result: { outcome: "succeeded" } }]);
    expect(fx.stripe.chargesOf(customer)).toBe(1);
    // biome-ignore lint/suspicious/noExplicitAny: Stripe invoices as the server holds them
    const invoices = fx.stripe.invoicesOf(customer) as any[];
    expect(invoices.map((invoice) => invoice.status).sort()).toEqual(["paid", "void"]);
    expect((await topUpState(userId))?.lastAttempt).toMatchObject({ outcome: "succeeded", invoiceId: invoices.find((invoice) => invoice.status === "paid")?.id });
  });

  it("a delivery whose top-up another one ended while it made its invoice pays nothing, and voids that invoice", async () => {
    const { userId, customer } = await below("topup-remake-ended");
    fx.stripe.failNext({ match: "/v1/invoices", method: "POST", status: 500 });
    await expect(runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).rejects.toThrow();
    let otherDone: Promise<unknown> = Promise.resolve();
    const stale = withStripe((stripe) => ({
      createOneOffInvoice: async (input: Parameters<StripePort["createOneOffInvoice"]>[0], intent: string) => {
        await otherDone;
        return stripe.createOneOffInvoice(input, intent.replace(/:remake:1$/, ""));
      },
    }));
    const staleRun = runAutoTopUp(stale, { userId, crossing: "9000000001" });
    otherDone = runAutoTopUp(fx.billing, { userId, crossing: "9000000001" });
    expect(await otherDone).toMatchObject({ kind: "charged", result: { outcome: "succeeded" } });
    expect(await staleRun).toEqual({ kind: "refused", reason: "endedMeanwhile" });
    expect(fx.stripe.chargesOf(customer)).toBe(1);
    // biome-ignore lint/suspicious/noExplicitAny: Stripe invoices as the server holds them
    expect((fx.stripe.invoicesOf(customer) as any[]).map((invoice) => invoice.status).sort()).toEqual(["paid", "void"]);
  });

  /** The billing deps whose first invoice is made (finalized, open) and then answered with a 5xx, as when Stripe's finalize ran and failed. */
  const finalizeRanThenFailed = () => {
    let calls = 0;
    return withStripe((stripe) => ({
      createOneOffInvoice: async (...args: Parameters<StripePort["createOneOffInvoice"]>) => {
        const made = await stripe.createOneOffInvoice(...args);
        if (++calls === 1) throw new UpstreamError("a 500 from finalize", true, 500);
        return made;
      },
    }));
  };

  it("a finalize that ran and answered 5xx leaves an open invoice: the retry voids it before paying its own, one charge", async () => {
    const { userId, customer } = await below("topup-finalize-ran");
    const billing = finalizeRanThenFailed();
    await expect(runAutoTopUp(billing, { userId, crossing: "9000000001" })).rejects.toThrow("a 500 from finalize");
    // biome-ignore lint/suspicious/noExplicitAny: Stripe invoices as the server holds them
    const [left] = fx.stripe.invoicesOf(customer) as any[];
    expect(left?.status).toBe("open");
    expect((await topUpState(userId))?.inFlight).toMatchObject({ invoiceFailures: 1, unusedInvoiceIds: [left?.id] });
    expect(await runAutoTopUp(billing, { userId, crossing: "9000000001" })).toMatchObject({ kind: "charged", result: { outcome: "succeeded" } });
    // biome-ignore lint/suspicious/noExplicitAny: Stripe invoices as the server holds them
    const invoices = fx.stripe.invoicesOf(customer) as any[];
    expect(invoices.map((invoice) => [invoice.id, invoice.status])).toEqual([
      [left?.id, "void"],
      [invoices[1]?.id, "paid"],
    ]);
    expect(fx.stripe.chargesOf(customer)).toBe(1);
  });

  it("that open invoice paid on its page before the retry pays: it is the top-up's payment, the retry's invoice is voided, one charge", async () => {
    const { userId, customer } = await below("topup-finalize-ran-paid");
    const billing = finalizeRanThenFailed();
    await expect(runAutoTopUp(billing, { userId, crossing: "9000000001" })).rejects.toThrow("a 500 from finalize");
    // biome-ignore lint/suspicious/noExplicitAny: Stripe invoices as the server holds them
    const [left] = fx.stripe.invoicesOf(customer) as any[];
    fx.stripe.markInvoicePaid(String(left?.id)); // the customer finds it and pays it (its invoice.paid not yet here)
    expect(await runAutoTopUp(billing, { userId, crossing: "9000000001" })).toMatchObject({ kind: "charged", result: { outcome: "succeeded", invoiceId: left?.id } });
    // biome-ignore lint/suspicious/noExplicitAny: Stripe invoices as the server holds them
    expect((fx.stripe.invoicesOf(customer) as any[]).map((invoice) => invoice.status)).toEqual(["paid", "void"]);
    expect((await topUpState(userId))?.lastAttempt).toMatchObject({ outcome: "succeeded", invoiceId: left?.id });
    expect((await deliverPaid(left?.id)).json.outcome).toBe("pack_granted");
    expect((await packGrants(userId)).map((entry) => entry.amount)).toEqual([STARTER]);
  });

  it("a refusal to make the invoice after a finalize that ran and failed: the open invoice it left is voided too, declined", async () => {
    const { userId, customer, card } = await below("topup-make-refused-left");
    const billing = finalizeRanThenFailed();
    await expect(runAutoTopUp(billing, { userId, crossing: "9000000001" })).rejects.toThrow("a 500 from finalize");
    fx.stripe.detachPaymentMethod(card);
    expect(await runAutoTopUp(billing, { userId, crossing: "9000000001" })).toMatchObject({ kind: "charged", result: { outcome: "declined" } });
    // biome-ignore lint/suspicious/noExplicitAny: Stripe invoices as the server holds them
    expect((fx.stripe.invoicesOf(customer) as any[]).map((invoice) => invoice.status)).toEqual(["void"]);
    expect(fx.stripe.chargesOf(customer)).toBe(0);
  });

  it("a void of a failed try's invoice answered 5xx (kept for its key) does not block the top-up: the next try voids under a new key and pays", async () => {
    const { userId, customer } = await below("topup-void-unused-5xx");
    const billing = finalizeRanThenFailed();
    await expect(runAutoTopUp(billing, { userId, crossing: "9000000001" })).rejects.toThrow("a 500 from finalize");
    // biome-ignore lint/suspicious/noExplicitAny: Stripe invoices as the server holds them
    const [left] = fx.stripe.invoicesOf(customer) as any[];
    fx.stripe.failNext({ match: `/v1/invoices/${left?.id}/void`, method: "POST", status: 500, keep: true });
    await expect(runAutoTopUp(billing, { userId, crossing: "9000000001" })).rejects.toThrow();
    expect(await runAutoTopUp(billing, { userId, crossing: "9000000001" })).toMatchObject({ kind: "charged", result: { outcome: "succeeded" } });
    const voids = fx.stripe.requestsTo(`/v1/invoices/${left?.id}/void`, "POST");
    expect(new Set(voids.map((request) => request.idempotencyKey)).size).toBe(voids.length);
    // biome-ignore lint/suspicious/noExplicitAny: Stripe invoices as the server holds them
    expect((fx.stripe.invoicesOf(customer) as any[]).map((invoice) => invoice.status)).toEqual(["void", "paid"]);
    expect(fx.stripe.chargesOf(customer)).toBe(1);
  });

  it("a delivery refused while making its invoice, as another delivery records and pays one: the paid top-up counts (the month's limit holds)", async () => {
    const { userId, customer } = await below("topup-refused-race", { monthlyLimit: 1 });
    fx.stripe.failNext({ match: "/v1/invoices", method: "POST", status: 500 });
    await expect(runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).rejects.toThrow();
    let refusedDone: Promise<unknown> = Promise.resolve();
    const paying = withStripe((stripe) => ({
      payInvoice: async (...args: Parameters<StripePort["payInvoice"]>) => {
        await refusedDone;
        return stripe.payInvoice(...args);
      },
    }));
    const refused = withStripe(() => ({
      createOneOffInvoice: async () => {
        await eventually(async () => (await topUpState(userId))?.inFlight?.invoiceId !== undefined, "the other delivery's invoice recorded", 10_000);
        throw new UpstreamError(undefined, false, 400); // e.g. the pack's price archived after the other try added its item
      },
    }));
    const refusedRun = runAutoTopUp(refused, { userId, crossing: "9000000001" });
    refusedDone = refusedRun.catch(() => undefined);
    await Promise.all([refusedRun, runAutoTopUp(paying, { userId, crossing: "9000000001" })]);
    expect(fx.stripe.chargesOf(customer)).toBe(1);
    const state = await topUpState(userId);
    expect(state).toMatchObject({ startedThisMonth: 1, failuresInARow: 0, lastAttempt: { seq: 1, outcome: "succeeded" } });
    // biome-ignore lint/suspicious/noExplicitAny: Stripe invoices as the server holds them
    const paid = (fx.stripe.invoicesOf(customer) as any[]).find((invoice) => invoice.status === "paid");
    await deliverPaid(paid?.id);
    await setAvailable(userId, 1_000, "topup-refused-race-spend-2");
    expect(await runAutoTopUp(fx.billing, { userId, crossing: "9000000002" })).toEqual({ kind: "refused", reason: "monthlyLimit" });
    expect(fx.stripe.chargesOf(customer)).toBe(1);
  });

  it("a delivery whose top-up ended declined without an invoice voids the invoice it made", async () => {
    const { userId, customer, card } = await below("topup-ended-declined");
    fx.stripe.failNext({ match: "/v1/invoices", method: "POST", status: 500 });
    await expect(runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).rejects.toThrow();
    let madeIt: () => void = () => {};
    const made = new Promise<void>((resolve) => {
      madeIt = resolve;
    });
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const stale = withStripe((stripe) => ({
      createOneOffInvoice: async (input: Parameters<StripePort["createOneOffInvoice"]>[0], intent: string, onDraft?: (id: string) => void) => {
        const invoice = await stripe.createOneOffInvoice(input, intent.replace(/:remake:1$/, ""), onDraft);
        madeIt();
        await released;
        return invoice;
      },
    }));
    const staleRun = runAutoTopUp(stale, { userId, crossing: "9000000001" });
    await made;
    fx.stripe.detachPaymentMethod(card);
    expect(await runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).toMatchObject({ kind: "charged", result: { outcome: "declined" } });
    release();
    expect(await staleRun).toEqual({ kind: "refused", reason: "endedMeanwhile" });
    // biome-ignore lint/suspicious/noExplicitAny: Stripe invoices as the server holds them
    expect((fx.stripe.invoicesOf(customer) as any[]).map((invoice) => invoice.status)).toEqual(["void"]);
    expect(fx.stripe.chargesOf(customer)).toBe(0);
  });

  it("a duplicate delivery's 5xx replaying the recorded invoice never notes it as unused: the next delivery pays it", async () => {
    const { userId, customer } = await below("topup-recorded-not-unused");
    let entered: () => void = () => {};
    const staleEntered = new Promise<void>((resolve) => {
      entered = resolve;
    });
    const dies = withStripe((stripe) => ({
      createOneOffInvoice: async (...args: Parameters<StripePort["createOneOffInvoice"]>) => {
        await staleEntered;
        return stripe.createOneOffInvoice(...args);
      },
      payInvoice: async () => {
        throw new Error("the function died before paying");
      },
    }));
    const stale = withStripe((stripe) => ({
      createOneOffInvoice: async (...args: Parameters<StripePort["createOneOffInvoice"]>) => {
        entered();
        await eventually(async () => (await topUpState(userId))?.inFlight?.invoiceId !== undefined, "the invoice recorded", 10_000);
        fx.stripe.failNext({ match: "/v1/invoiceitems", method: "POST", status: 500 }); // not kept: before Stripe ran it
        return stripe.createOneOffInvoice(...args);
      },
    }));
    const staleRun = runAutoTopUp(stale, { userId, crossing: "9000000001" });
    await staleEntered;
    await Promise.allSettled([staleRun, runAutoTopUp(dies, { userId, crossing: "9000000001" })]);
    const inFlight = (await topUpState(userId))?.inFlight;
    expect(inFlight?.invoiceId).toBeDefined();
    expect(inFlight?.unusedInvoiceIds ?? []).not.toContain(inFlight?.invoiceId);
    expect(await runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).toMatchObject({ kind: "charged", result: { outcome: "succeeded", invoiceId: inFlight?.invoiceId } });
    expect(fx.stripe.chargesOf(customer)).toBe(1);
  });

  it("Stripe refusing to make the invoice (the card it began with removed) ends the top-up declined instead of retrying it for good", async () => {
    const { userId, customer, card } = await below("topup-make-refused");
    fx.stripe.failNext({ match: "/v1/invoices", method: "POST", status: 500, keep: true });
    await expect(runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).rejects.toThrow();
    fx.stripe.detachPaymentMethod(card); // the user replaced the card in the billing portal
    fx.stripe.savePaymentMethod(customer, { default: true });
    expect(await runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).toMatchObject({ kind: "charged", result: { outcome: "declined" } });
    const state = await topUpState(userId);
    expect(state?.inFlight).toBeUndefined();
    expect(state).toMatchObject({ failuresInARow: 1, startedThisMonth: 0, lastAttempt: { seq: 1, outcome: "declined" } });
    expect(state?.lastAttempt?.invoiceId).toBeUndefined();
    expect(fx.stripe.chargesOf(customer)).toBe(0);
  });

  it("a pay refused although the invoice is paid meanwhile (by an earlier call we never heard the end of): succeeded, the invoice not voided", async () => {
    const { userId, customer } = await below("topup-paid-meanwhile");
    const billing = withStripe(() => ({
      payInvoice: async (id: string) => {
        fx.stripe.markInvoicePaid(id); // the other call's payment lands
        throw new UpstreamError(undefined, false, 400); // and this one is refused ("already paid")
      },
    }));
    const run = await runAutoTopUp(billing, { userId, crossing: "9000000001" });
    const invoiceId = String(fx.stripe.invoicesOf(customer)[0]?.id);
    expect(run).toMatchObject({ kind: "charged", result: { outcome: "succeeded", invoiceId } });
    expect(fx.stripe.requestsTo(`/v1/invoices/${invoiceId}/void`, "POST")).toEqual([]);
    expect(fx.stripe.invoices.get(invoiceId)?.status).toBe("paid");
    expect(await topUpState(userId)).toMatchObject({ failuresInARow: 0, lastAttempt: { outcome: "succeeded" } });
  });

  it("a pay paid by another call between the refusal's check and the void (Stripe refuses to void a paid invoice): succeeded, not declined", async () => {
    const { userId, customer } = await below("topup-void-race");
    const billing = withStripe((stripe) => ({
      payInvoice: async () => {
        throw new PaymentFailedError();
      },
      voidInvoice: async (id: string, intent: string) => {
        fx.stripe.markInvoicePaid(id); // the other call's payment lands just before the void
        return stripe.voidInvoice(id, intent);
      },
    }));
    const run = await runAutoTopUp(billing, { userId, crossing: "9000000001" });
    const invoiceId = String(fx.stripe.invoicesOf(customer)[0]?.id);
    expect(fx.stripe.requestsTo(`/v1/invoices/${invoiceId}/void`, "POST")).toHaveLength(1); // tried, and refused
    expect(fx.stripe.invoices.get(invoiceId)?.status).toBe("paid");
    expect(run).toMatchObject({ kind: "charged", result: { outcome: "succeeded", invoiceId } });
    expect(await topUpState(userId)).toMatchObject({ failuresInARow: 0, startedThisMonth: 1, lastAttempt: { outcome: "succeeded" } });
  });

  it("a pay refused as a conflict (409: our other call under the same key is still running) is not a decline: the job is retried, nothing voided", async () => {
    const { userId, customer } = await below("topup-409");
    // a first run makes the invoice and fails its pay (a 5xx): the invoice is known from here on
    fx.stripe.setPayOutcome("server_error", { customer, times: 1 });
    await expect(runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).rejects.toThrow();
    const invoiceId = String(fx.stripe.invoicesOf(customer)[0]?.id);
    const conflict = { error: { type: "idempotency_error", message: "There is currently another in-progress request using this Idempotent Key." } };
    fx.stripe.failNext({ match: `/v1/invoices/${invoiceId}/pay`, method: "POST", status: 409, body: conflict }); // the fixture's SDK does not retry
    await expect(runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).rejects.toThrow();
    const state = await topUpState(userId);
    expect(state?.inFlight).toMatchObject({ seq: 1, payFailures: 1 }); // a conflict is not a 5xx: its key stays
    expect(state?.lastAttempt).toBeUndefined();
    expect(fx.stripe.requestsTo(`/v1/invoices/${invoiceId}/void`, "POST")).toEqual([]);
    expect(fx.stripe.invoices.get(invoiceId)?.status).toBe("open");
    // the next delivery pays it
    expect(await runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).toMatchObject({ kind: "charged", result: { outcome: "succeeded", invoiceId } });
    expect(fx.stripe.chargesOf(customer)).toBe(1);
  });

  it("a pay that times out keeps its key for the retry (Stripe then answers the first call); only a 5xx answer moves to a new key", async () => {
    const { userId, customer } = await below("topup-timeout-key");
    const intents: string[] = [];
    let calls = 0;
    const billing = withStripe((stripe) => ({
      payInvoice: async (id: string, paymentMethod: string, intent: string) => {
        intents.push(intent);
        calls += 1;
        if (calls === 1) throw new UpstreamError("timed out", true); // no answer
        if (calls === 2) throw new UpstreamError("a 500", true, 500);
        return stripe.payInvoice(id, paymentMethod, intent);
      },
    }));
    await expect(runAutoTopUp(billing, { userId, crossing: "9000000001" })).rejects.toThrow("timed out");
    expect((await topUpState(userId))?.inFlight?.payFailures).toBeUndefined();
    await expect(runAutoTopUp(billing, { userId, crossing: "9000000001" })).rejects.toThrow("a 500");
    expect((await topUpState(userId))?.inFlight?.payFailures).toBe(1);
    expect(await runAutoTopUp(billing, { userId, crossing: "9000000001" })).toMatchObject({ kind: "charged", result: { outcome: "succeeded" } });
    expect(intents[1]).toBe(intents[0]);
    expect(intents[2]).not.toBe(intents[1]);
    expect(fx.stripe.chargesOf(customer)).toBe(1);
  });

  it("Stripe acting without answering: the retry finds the invoice paid, never pays twice", async () => {
    const { userId, customer } = await below("topup-hangup");
    // the fixture's client gives up after 5 s: the server pays, then holds its answer longer
    fx.stripe.setPayOutcome("timeout_after_acting", { customer, times: 1 });
    await expect(runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).rejects.toThrow();
    expect(fx.stripe.chargesOf(customer)).toBe(1);
    const retried = await runAutoTopUp(fx.billing, { userId, crossing: "9000000001" });
    expect(retried).toMatchObject({ kind: "charged", result: { outcome: "succeeded" } });
    expect(fx.stripe.chargesOf(customer)).toBe(1);
    expect(fx.stripe.invoicesCreated(customer)).toBe(1);
  }, 30_000);

  it("no saved card any more: a failure without a charge", async () => {
    const { userId, customer } = await below("topup-gone");
    for (const [id, method] of fx.stripe.paymentMethods) if (method.customer === customer) fx.stripe.detachPaymentMethod(id);
    expect(await runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).toEqual({ kind: "no_payment_method" });
    expect(await topUpState(userId)).toMatchObject({ failuresInARow: 1, lastAttempt: { outcome: "no_payment_method" } });
    expect(fx.stripe.invoicesCreated(customer)).toBe(0);
  });

  it("a crash between the charge and its record: invoice.paid ends the top-up and grants once", async () => {
    const { userId, customer } = await below("topup-crash");
    // the function dies after Stripe paid: the state still shows the top-up in flight
    fx.stripe.setPayOutcome("timeout_after_acting", { customer, times: 1 });
    await expect(runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).rejects.toThrow();
    const invoiceId = (await topUpState(userId))?.inFlight?.invoiceId as string;
    expect(invoiceId).toMatch(/^in_/);
    await deliverPaid(invoiceId);
    await deliverPaid(invoiceId);
    expect((await packGrants(userId)).map((entry) => entry.amount)).toEqual([STARTER]);
    const state = await topUpState(userId);
    expect(state?.inFlight).toBeUndefined();
    expect(state?.lastAttempt).toMatchObject({ outcome: "succeeded", invoiceId });
    // the redelivered job finds nothing left to do
    expect(await runAutoTopUp(fx.billing, { userId, crossing: "9000000001" })).toEqual({ kind: "refused", reason: "seenCrossing" });
    expect(fx.stripe.chargesOf(customer)).toBe(1);
  }, 30_000);
});

describe("the peers' runaway bugs, through the change stream and the top-up queue", () => {
  it("50 concurrent spends crossing the threshold: exactly one charge", async () => {
    const { userId, customer } = await userWithCard("topup-crowd");
    expect((await putAutoTopUp(userId, settings({ threshold: 5_000 }))).status).toBe(200);
    // 50 spends of 120 at once take 10,000 to 4,000: one of them crosses 5,000
    await Promise.all(
      Array.from({ length: 50 }, (_, index) =>
        grantCredits(fx.deps.ledger, { userId, amount: -120, bucket: "allowance", reason: "admin", key: `crowd-${userId}-${index}` }),
      ),
    );
    await eventually(async () => (await topUpState(userId))?.lastAttempt !== undefined, "the top-up");
    await pipeline.events.caughtUp();
    await new Promise((resolve) => setTimeout(resolve, 1_000)); // any second job would have run by now
    expect(fx.stripe.chargesOf(customer)).toBe(1);
    expect(fx.stripe.invoicesCreated(customer)).toBe(1);
    expect((await topUpState(userId))?.seq).toBe(1);
  });

  it(`a card that always declines: at most ${TOP_UP_FAILURE_LIMIT} attempts, then auto top-up turns itself off`, async () => {
    const { userId, customer } = await userWithCard("topup-decliner");
    fx.stripe.setPayOutcome("card_declined", { customer });
    expect((await putAutoTopUp(userId, settings({ threshold: 5_000 }))).status).toBe(200);
    // five crossings: back above the threshold, then below again, each time
    for (let crossing = 0; crossing < 5; crossing++) {
      await setAvailable(userId, 8_000, `decliner-up-${crossing}`);
      await setAvailable(userId, 1_000, `decliner-down-${crossing}`);
      await pipeline.events.caughtUp();
      await eventually(async () => (await topUpState(userId))?.inFlight === undefined, "the attempt to end");
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(fx.stripe.payAttempts(customer)).toBe(TOP_UP_FAILURE_LIMIT);
    const state = await topUpState(userId);
    expect(state).toMatchObject({ failuresInARow: TOP_UP_FAILURE_LIMIT, disabledReason: "failures", settings: { enabled: false } });
    expect(((await fx.deps.ledger.store.getAccount(userId)) as unknown as { autoTopUpBelow?: number }).autoTopUpBelow).toBeUndefined();
    const view = await fx.asUser(fx.fns.subscribe.route, userId, "GET /v1/billing/auto-topup");
    expect(view.json).toMatchObject({ enabled: false, disabledReason: "failures", failuresInARow: TOP_UP_FAILURE_LIMIT });
    // turning it on again clears the failures
    fx.stripe.setPayOutcome("succeeded", { customer });
    expect((await putAutoTopUp(userId, settings({ threshold: 5_000 }))).json).toMatchObject({ enabled: true, failuresInARow: 0, disabledReason: null });
  }, 60_000);

  it("a threshold one pack cannot lift: one top-up per crossing, never a loop", async () => {
    const { userId, customer } = await userWithCard("topup-deep");
    // 1,000,000 above a 50,000 pack: enabling while below is the crossing
    expect((await putAutoTopUp(userId, settings({ threshold: 1_000_000 }))).status).toBe(200);
    await eventually(async () => (await topUpState(userId))?.lastAttempt?.outcome === "succeeded", "the first top-up");
    await deliverPaid(String(fx.stripe.invoicesOf(customer)[0]?.id));
    expect((await getBalance(fx.deps.ledger, userId)).available).toBe(SIGNUP + STARTER);
    await pipeline.events.caughtUp();
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    // still below 1,000,000 after the pack: no new crossing, so no second top-up
    expect(fx.stripe.chargesOf(customer)).toBe(1);
    // spending more is not a crossing either (it was below already)
    await grantCredits(fx.deps.ledger, { userId, amount: -5_000, bucket: "allowance", reason: "admin", key: `deep-spend-${userId}` });
    await pipeline.events.caughtUp();
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(fx.stripe.chargesOf(customer)).toBe(1);
  }, 60_000);

  it("the monthly limit stops top-ups, however many crossings", async () => {
    const { userId, customer } = await userWithCard("topup-limit");
    expect((await putAutoTopUp(userId, settings({ threshold: 5_000, monthlyLimit: 2 }))).status).toBe(200);
    for (let crossing = 0; crossing < 4; crossing++) {
      await setAvailable(userId, 8_000, `limit-up-${crossing}`);
      await setAvailable(userId, 1_000, `limit-down-${crossing}`);
      await pipeline.events.caughtUp();
      await eventually(async () => (await topUpState(userId))?.inFlight === undefined, "the attempt to end");
      // each paid top-up's credits arrive (until then they would cover the next dip)
      for (const invoice of fx.stripe.invoicesOf(customer)) if (invoice.status === "paid") await deliverPaid(String(invoice.id));
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(fx.stripe.chargesOf(customer)).toBe(2);
    const view = await fx.asUser(fx.fns.subscribe.route, userId, "GET /v1/billing/auto-topup");
    expect(view.json).toMatchObject({ startedThisMonth: 2, monthlyLimit: 2 });
  }, 60_000);
});
