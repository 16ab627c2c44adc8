import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findFreePort } from "../../infra/local/dynamodb-local.js";
import { runOps } from "../../infra/ops/cli.js";
import { catalog } from "../../lib/catalog.js";
import { STRIPE_TEST_KEY, TEST_PRICE_AMOUNTS, TEST_PRICES } from "../helpers/billing.js";
import { checkedFetch, startLocalStack, stopLocalStack, until } from "../helpers/e2e.js";
import { signatureFor, WEBHOOK_SECRET } from "../helpers/stripe-events.js";
import { invoiceEvent } from "../helpers/stripe-official.js";
import { startStripeServer, type StripeTestServer } from "../helpers/stripe-server.js";
import { serviceToken, TEST_SECRET, userToken } from "../helpers/tokens.js";

/**
 * Auto top-up end to end, as `npm start` (infra/local/start.ts, in memory) runs it: a user spends
 * through the gate over HTTP, the change stream poller hands the threshold crossing to the stream
 * consumer, which queues it on the SQS stand-in ("creditgate-topups"); the queue poller runs
 * functions/auto-topup.ts, whose Stripe SDK (10 s timeout, 2 retries) charges the saved card at the
 * loopback Stripe server. One fresh user per way the charge can end. Credits only ever come from a
 * signed `invoice.paid` delivered to the stack's webhook.
 */

// biome-ignore lint/suspicious/noExplicitAny: JSON answers
type Json = any;

const STARTER = catalog.packs.starter?.credits as number;
const SIGNUP = catalog.signupBonus;
/** the pack's price, in cents, at the loopback Stripe server: what its invoice must charge */
const STARTER_CENTS = 1_000;
/** a small-tier model: the free plan includes it (docs/entitlements.md) */
const SONNET = "anthropic/claude-sonnet-4.5";
/** start at SIGNUP (10,000); each spend (10k in, 10k out on the large tier) costs 900: the third one crosses */
const THRESHOLD = 8_000;
const SPEND = { inputTokens: 50_000, outputTokens: 50_000 }; // 150 + 750 = 900 credits of sonnet

describe("npm start: auto top-up through the change stream, the top-up queue and the Stripe SDK", () => {
  let stripe: StripeTestServer;
  let stack: ReturnType<typeof startLocalStack>;
  let base: string;
  let dynamoPort: number;
  let gateToken: string;
  /** each user's Stripe counts and auto top-up view when their test ended: checked again after the queue's visibility timeout */
  const finished: { userId: string; token: string; customer: string; at: number; pays: number; charges: number; invoices: number; view: Json }[] = [];
  /** the top-up queue's visibility timeout (infra/local/sqs-local.ts): a job not deleted comes back after it */
  const VISIBILITY_MS = 30_000;

  beforeAll(async () => {
    stripe = await startStripeServer({ unitAmounts: { ...TEST_PRICE_AMOUNTS, [TEST_PRICES.STRIPE_PRICE_PACK_STARTER]: STARTER_CENTS } });
    const port = await findFreePort();
    dynamoPort = await findFreePort();
    base = `http://127.0.0.1:${port}`;
    stack = startLocalStack({
      PORT: String(port),
      DYNAMODB_LOCAL_PORT: String(dynamoPort),
      AUTH_JWT_SECRET: TEST_SECRET,
      STRIPE_SECRET_KEY: STRIPE_TEST_KEY,
      STRIPE_API_BASE: stripe.url,
      STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
      ...TEST_PRICES,
      SWEEP_INTERVAL_SECONDS: "3600",
    });
    await until(() => stack.output().includes("Ctrl-C stops everything.") || stack.child.exitCode !== null, "the start banner", 110_000);
    expect(stack.child.exitCode, stack.errors()).toBeNull();
    gateToken = await serviceToken();
  }, 120_000);

  afterAll(async () => {
    if (stack) await stopLocalStack(stack.child);
    await stripe?.close();
  }, 30_000);

  async function call(method: string, path: string, token: string, body?: unknown): Promise<{ status: number; json: Json }> {
    const response = await checkedFetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await response.text();
    return { status: response.status, json: text ? JSON.parse(text) : undefined };
  }

  /**
   * A fresh user with a Stripe customer (made by a starter pack checkout, never completed) and a
   * saved default card, auto top-up turned on over HTTP.
   */
  async function userWithAutoTopUp(label: string) {
    const userId = `e2e-topup-${label}-${randomUUID()}`;
    const token = await userToken(userId);
    const checkout = await call("POST", "/v1/billing/checkout", token, { pack: "starter" });
    expect(checkout.status).toBe(200);
    const sessions = stripe.requestsTo("/v1/checkout/sessions", "POST").filter((request) => request.body.client_reference_id === userId);
    expect(sessions).toHaveLength(1);
    const customer = sessions[0]?.body.customer as string;
    expect(customer).toMatch(/^cus_/);
    expect(stripe.customers.has(customer)).toBe(true);
    stripe.savePaymentMethod(customer, { default: true });
    const on = await call("PUT", "/v1/billing/auto-topup", token, { enabled: true, threshold: THRESHOLD, pack: "starter", monthlyLimit: 5 });
    expect(on.status).toBe(200);
    expect(on.json).toMatchObject({ enabled: true, threshold: THRESHOLD, pack: "starter", monthlyLimit: 5, failuresInARow: 0, inFlight: false, lastAttempt: null });
    return { userId, token, customer };
  }

  const credits = async (token: string) => {
    const answer = await call("GET", "/v1/credits", token);
    expect(answer.status).toBe(200);
    return answer.json as { balance: number; available: number; held: number; purchased: number };
  };

  /** Chats through the gate (authorize, settle) until available is below the threshold; returns available then. */
  async function spendBelowThreshold(userId: string, token: string): Promise<number> {
    let spends = 0;
    let available = (await credits(token)).available;
    expect(available).toBe(SIGNUP);
    while (available >= THRESHOLD) {
      const hold = await call("POST", "/v1/gate/authorize", gateToken, {
        userId,
        requestId: `chat-${spends}`,
        model: SONNET,
        inputTokens: SPEND.inputTokens,
        maxOutputTokens: SPEND.outputTokens,
      });
      expect(hold.status, JSON.stringify(hold.json)).toBe(200);
      const settled = await call("POST", "/v1/gate/settle", gateToken, { holdId: hold.json.holdId, ...SPEND });
      expect(settled.status).toBe(200);
      expect(settled.json).toMatchObject({ status: "settled", charged: 900 });
      spends += 1;
      available = (await credits(token)).available;
      expect(spends).toBeLessThanOrEqual(3);
    }
    expect(spends).toBe(3);
    expect(available).toBe(SIGNUP - 3 * 900);
    return available;
  }

  const autoTopUp = async (token: string) => {
    const answer = await call("GET", "/v1/billing/auto-topup", token);
    expect(answer.status).toBe(200);
    return answer.json;
  };

  /** Polls GET /v1/billing/auto-topup until an attempt has ended (nothing in flight, a lastAttempt shown). */
  async function waitForAttempt(token: string, timeoutMs = 30_000): Promise<Json> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const view = await autoTopUp(token);
      if (view.lastAttempt !== null && view.inFlight === false) return view;
      if (Date.now() > deadline) throw new Error(`no top-up outcome within ${timeoutMs} ms: ${JSON.stringify(view)}\n${stack.errors()}`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  /** The pay calls the stack made for this customer's invoices. */
  const payRequests = (customer: string) =>
    stripe.requests.filter((request) => {
      const match = request.method === "POST" ? /^\/v1\/invoices\/([^/]+)\/pay$/.exec(request.path) : null;
      return match !== null && stripe.invoices.get(match[1] as string)?.customer === customer;
    });

  /** The invoice `invoice.paid` Stripe sends for an invoice the loopback server holds, signed and delivered to the stack. */
  async function deliverPaid(invoiceId: string): Promise<{ status: number; outcome: string }> {
    const stored = stripe.invoices.get(invoiceId);
    if (!stored) throw new Error(`the loopback server holds no invoice ${invoiceId}`);
    const payload = JSON.stringify(invoiceEvent(stored, { id: `evt_paid_${invoiceId}` }));
    const response = await checkedFetch(`${base}/v1/stripe/webhook`, {
      method: "POST",
      headers: { "content-type": "application/json", "stripe-signature": signatureFor(payload, { secret: WEBHOOK_SECRET }) },
      body: payload,
    });
    return { status: response.status, outcome: ((await response.json()) as { outcome: string }).outcome };
  }

  /** The user's `pack` ledger entries, every history page read. */
  async function packEntries(token: string): Promise<{ amount: number; refs?: Record<string, unknown> }[]> {
    const entries: Json[] = [];
    let cursor: string | null = null;
    do {
      const page = await call("GET", `/v1/credits/history?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, token);
      expect(page.status).toBe(200);
      entries.push(...page.json.entries);
      cursor = page.json.nextCursor ?? null;
    } while (cursor);
    expect(entries.some((entry) => entry.reason === "signup")).toBe(true); // the whole history was read
    return entries.filter((entry) => entry.reason === "pack");
  }

  /** The one auto top-up invoice the customer has, checked to be the starter pack's, as the top-up `seq` 1 made it. */
  function theInvoice(customer: string, userId: string): Json {
    const invoices = stripe.invoicesOf(customer);
    expect(invoices).toHaveLength(1);
    expect(stripe.invoicesCreated(customer)).toBe(1);
    const invoice = invoices[0] as Json;
    expect(invoice.lines.data.map((line: Json) => line.pricing.price_details.price)).toEqual([TEST_PRICES.STRIPE_PRICE_PACK_STARTER]);
    expect(invoice.amount_due).toBe(STARTER_CENTS);
    expect(invoice.metadata).toMatchObject({ userId, autoTopUp: "1", pack: "starter" });
    return invoice;
  }

  /** Records where the user's top-up ended, for the last test to check nothing changed after. */
  async function finish(userId: string, token: string, customer: string) {
    const view = await autoTopUp(token);
    expect(view.inFlight).toBe(false);
    finished.push({ userId, token, customer, at: Date.now(), pays: stripe.payAttempts(customer), charges: stripe.chargesOf(customer), invoices: stripe.invoicesCreated(customer), view });
  }

  /** A paid top-up's credits: exactly one pack entry from its invoice.paid, a redelivery granting nothing more. */
  async function expectCreditedOnce(token: string, invoiceId: string, availableBefore: number) {
    expect(await packEntries(token)).toEqual([]); // nothing before Stripe says paid
    expect(await deliverPaid(invoiceId)).toEqual({ status: 200, outcome: "pack_granted" });
    expect(await deliverPaid(invoiceId)).toEqual({ status: 200, outcome: "duplicate" });
    const packs = await packEntries(token);
    expect(packs.map((entry) => entry.amount)).toEqual([STARTER]);
    expect(packs[0]?.refs).toMatchObject({ invoice: invoiceId, pack: "starter" });
    expect((await credits(token)).available).toBe(availableBefore + STARTER);
  }

  it("succeeded: one invoice for the pack, charged once, shown as succeeded; its invoice.paid grants the pack once", async () => {
    const { userId, token, customer } = await userWithAutoTopUp("paid");
    expect(stripe.payAttempts(customer)).toBe(0);
    const available = await spendBelowThreshold(userId, token);
    const view = await waitForAttempt(token);
    const invoice = theInvoice(customer, userId);
    expect(view).toMatchObject({
      enabled: true,
      failuresInARow: 0,
      startedThisMonth: 1,
      disabledReason: null,
      lastAttempt: { outcome: "succeeded", pack: "starter", invoiceId: invoice.id, actionUrl: null },
    });
    expect(invoice.status).toBe("paid");
    expect(stripe.payAttempts(customer)).toBe(1);
    expect(stripe.chargesOf(customer)).toBe(1);
    await expectCreditedOnce(token, invoice.id, available);
    expect((await autoTopUp(token)).lastAttempt).toMatchObject({ outcome: "succeeded", invoiceId: invoice.id });
    expect(stripe.chargesOf(customer)).toBe(1);
    await finish(userId, token, customer);
  }, 60_000);

  it("requires_action: stopped with the hosted invoice page to confirm on, a failure, nothing charged or credited", async () => {
    const { userId, token, customer } = await userWithAutoTopUp("3ds");
    stripe.setPayOutcome("requires_action", { customer });
    const available = await spendBelowThreshold(userId, token);
    const view = await waitForAttempt(token);
    const invoice = theInvoice(customer, userId);
    expect(view).toMatchObject({
      enabled: true,
      failuresInARow: 1,
      startedThisMonth: 1, // the open invoice may still be paid: it counts in the month
      lastAttempt: { outcome: "action_required", pack: "starter", invoiceId: invoice.id },
    });
    expect(view.lastAttempt.actionUrl).toBe(`${stripe.url}/hosted/invoices/${invoice.id}`);
    expect(view.lastAttempt.actionUrl).toBe(invoice.hosted_invoice_url);
    expect(invoice.status).toBe("open");
    expect(stripe.payAttempts(customer)).toBe(1);
    expect(stripe.chargesOf(customer)).toBe(0);
    expect(await packEntries(token)).toEqual([]);
    expect((await credits(token)).available).toBe(available);

    // the customer confirms on the hosted page: Stripe sends invoice.paid, which grants the pack once and forgives the failure
    stripe.markInvoicePaid(invoice.id);
    await expectCreditedOnce(token, invoice.id, available);
    expect(await autoTopUp(token)).toMatchObject({ failuresInARow: 0, inFlight: false, lastAttempt: { outcome: "succeeded", invoiceId: invoice.id } });
    expect(stripe.chargesOf(customer)).toBe(1);
    expect(stripe.payAttempts(customer)).toBe(1);
    await finish(userId, token, customer);
  }, 60_000);

  it("card_declined: a failure, the invoice voided, not counted in the month, no credit, no second attempt", async () => {
    const { userId, token, customer } = await userWithAutoTopUp("declined");
    stripe.setPayOutcome("card_declined", { customer });
    const available = await spendBelowThreshold(userId, token);
    const view = await waitForAttempt(token);
    const invoice = theInvoice(customer, userId);
    expect(view).toMatchObject({
      enabled: true,
      failuresInARow: 1,
      startedThisMonth: 0,
      disabledReason: null,
      lastAttempt: { outcome: "declined", pack: "starter", invoiceId: invoice.id, actionUrl: null },
    });
    expect(invoice.status).toBe("void");
    expect(stripe.requestsTo(`/v1/invoices/${invoice.id}/void`, "POST")).toHaveLength(1);
    expect(stripe.payAttempts(customer)).toBe(1);
    expect(stripe.chargesOf(customer)).toBe(0);
    expect(await packEntries(token)).toEqual([]);
    expect((await credits(token)).available).toBe(available);
    await finish(userId, token, customer);
  }, 60_000);

  it("server_error: Stripe answers 500 and keeps that answer for its key; the top-up stays in flight, and the queue's redelivery pays the same invoice under a key of its own, once", async () => {
    const { userId, token, customer } = await userWithAutoTopUp("5xx");
    // the 500 comes with stripe-should-retry: false, so the SDK does not retry: the job throws and
    // stays on the queue (visibility timeout 30 s)
    stripe.setPayOutcome("server_error", { customer, times: 1 });
    const available = await spendBelowThreshold(userId, token);
    await until(() => stripe.payAttempts(customer) >= 1, "the failed pay call", 30_000);
    const failedAt = Date.now();
    // in flight, nothing decided yet, nothing charged, one invoice
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(await autoTopUp(token)).toMatchObject({ inFlight: true, lastAttempt: null, failuresInARow: 0, startedThisMonth: 1 });
    expect(stripe.payAttempts(customer)).toBe(1);
    expect(stripe.chargesOf(customer)).toBe(0);
    const invoice = theInvoice(customer, userId);
    expect(stripe.invoices.get(invoice.id)?.status).toBe("open");

    const view = await waitForAttempt(token, 60_000);
    // the retry came from the queue's redelivery, not from the SDK
    expect(Date.now() - failedAt).toBeGreaterThan(20_000);
    expect(view).toMatchObject({ failuresInARow: 0, startedThisMonth: 1, lastAttempt: { outcome: "succeeded", invoiceId: invoice.id } });
    const pays = payRequests(customer);
    expect(pays).toHaveLength(2);
    expect(pays.every((request) => request.path === `/v1/invoices/${invoice.id}/pay`)).toBe(true);
    expect(pays[0]?.idempotencyKey).toBeTruthy();
    expect(pays[1]?.idempotencyKey).not.toBe(pays[0]?.idempotencyKey); // the first key would get its 500 again
    expect(stripe.invoicesCreated(customer)).toBe(1);
    expect(stripe.requestsTo("/v1/invoices", "POST").filter((request) => request.path === "/v1/invoices" && request.body.customer === customer)).toHaveLength(1);
    expect(stripe.chargesOf(customer)).toBe(1);
    expect(stripe.invoices.get(invoice.id)?.status).toBe("paid");
    await expectCreditedOnce(token, invoice.id, available);
    expect(stripe.chargesOf(customer)).toBe(1);
    await finish(userId, token, customer);
  }, 120_000);

  it("timeout_after_acting: Stripe pays but never answers; the SDK's retry gets the paid invoice replayed — one charge, succeeded", async () => {
    const { userId, token, customer } = await userWithAutoTopUp("hangup");
    stripe.setPayOutcome("timeout_after_acting", { customer, times: 1 });
    const hangUpsBefore = stripe.served.hangUps;
    const available = await spendBelowThreshold(userId, token);
    // the SDK waits out its 10 s timeout before retrying
    const view = await waitForAttempt(token, 60_000);
    const invoice = theInvoice(customer, userId);
    expect(stripe.served.hangUps - hangUpsBefore).toBe(1);
    expect(view).toMatchObject({ failuresInARow: 0, startedThisMonth: 1, lastAttempt: { outcome: "succeeded", invoiceId: invoice.id } });
    const pays = payRequests(customer);
    expect(pays).toHaveLength(2);
    expect(pays[0]?.idempotencyKey).toBeTruthy();
    expect(pays[1]?.idempotencyKey).toBe(pays[0]?.idempotencyKey);
    expect(stripe.chargesOf(customer)).toBe(1);
    expect(stripe.invoicesCreated(customer)).toBe(1);
    await expectCreditedOnce(token, invoice.id, available);
    expect(stripe.chargesOf(customer)).toBe(1);
    await finish(userId, token, customer);
  }, 90_000);

  it("after the queue's visibility timeout nothing more happened (no redelivered job charged again), and `npm run ops -- audit --all` finds no drift", async () => {
    expect(finished).toHaveLength(5);
    const wait = Math.max(...finished.map((user) => user.at)) + VISIBILITY_MS + 2_000 - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    for (const user of finished) {
      const now = { pays: stripe.payAttempts(user.customer), charges: stripe.chargesOf(user.customer), invoices: stripe.invoicesCreated(user.customer), view: await autoTopUp(user.token) };
      expect(now, user.userId).toEqual({ pays: user.pays, charges: user.charges, invoices: user.invoices, view: user.view });
      expect((await packEntries(user.token)).length, user.userId).toBe(user.charges); // one pack per paid invoice, none otherwise
    }
    const users = finished.map((user) => user.userId);
    const out: string[] = [];
    const env = { TABLE_NAME: "creditgate-local", DYNAMODB_ENDPOINT: `http://127.0.0.1:${dynamoPort}`, ...TEST_PRICES };
    const code = await runOps(["audit", "--all"], env, { out: (line) => out.push(line), err: (line) => out.push(line) });
    expect(code, out.join("\n")).toBe(0);
    const summary = /^audited (\d+) accounts: no drift$/.exec(out.at(-1) ?? "");
    expect(summary, out.join("\n")).not.toBeNull();
    expect(Number(summary?.[1])).toBeGreaterThanOrEqual(users.length);
    for (const userId of users) {
      const one: string[] = [];
      expect(await runOps(["audit", userId], env, { out: (line) => one.push(line), err: (line) => one.push(line) }), one.join("\n")).toBe(0);
    }
    // and the stack logged no error of its own along the way
    expect(stack.errors()).not.toMatch(/local API error|failed to load/);
  }, 90_000);
});
