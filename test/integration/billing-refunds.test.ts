import { describe, expect, it } from "vitest";
import type { BillingAccount } from "../../lib/billing/index.js";
import { auditAccount, authorizeChat, getBalance, grantAllowanceIfDue, listHistory, settleChat } from "../../lib/ledger/index.js";
import { shareOf } from "../../lib/ledger/paid-year.js";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { SONNET } from "../helpers/http.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { chargeRefunded, stripeEvent, uniqueStripeId } from "../helpers/stripe-events.js";
import { disputeClosed, disputeCreated, refundEvent } from "../helpers/stripe-reversals.js";

captureLogs();
const fx = useBillingFixture();

const view = (userId: string) => getBalance(fx.deps.ledger, userId);
const entries = async (userId: string) => (await listHistory(fx.deps.ledger, { userId, limit: 100 })).entries;

/** A user who bought a pack through the API and whose payment was granted. */
async function packBuyer(pack: "starter" | "pro" = "starter", amountCents = 1_000) {
  const userId = uniqueUser("buyer");
  const started = await fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/checkout", { pack });
  expect(started.status).toBe(200);
  const account = (await fx.deps.ledger.store.getAccount(userId)) as BillingAccount;
  const paymentIntent = uniqueStripeId("pi");
  const chargeId = uniqueStripeId("ch");
  const granted = await fx.deliver(
    stripeEvent("checkout.session.completed.payment", {
      object: {
        id: account.pendingPackCheckout?.sessionId,
        customer: account.stripeCustomerId,
        payment_intent: paymentIntent,
        amount_total: amountCents,
        metadata: { userId, pack },
      },
    }),
  );
  expect(granted.json.outcome).toBe("pack_granted");
  return { userId, customer: account.stripeCustomerId as string, paymentIntent, chargeId, amountCents };
}

const refunded = chargeRefunded;

const disputed = (input: { chargeId: string; paymentIntent: string; amount: number; id?: string }) =>
  stripeEvent("charge.dispute.created", {
    object: { id: input.id ?? uniqueStripeId("dp"), charge: input.chargeId, payment_intent: input.paymentIntent, amount: input.amount },
  });

describe("charge.refunded", () => {
  it("a full refund of a pack takes its credits back once, from the purchased bucket", async () => {
    const buyer = await packBuyer();
    expect((await view(buyer.userId)).purchased).toBe(50_000);
    const event = refunded({ ...buyer, amount: 1_000, refunded: 1_000 });
    const res = await fx.deliver(event);
    expect(res.status).toBe(200);
    expect(res.json.outcome).toBe("clawed_back");
    expect(await view(buyer.userId)).toMatchObject({ balance: 10_000, purchased: 0, allowance: 10_000 });
    const [last] = await entries(buyer.userId);
    // keyed by charge, Stripe's cumulative refunded amount and the event's time (T0, the fixture's)
    expect(last).toMatchObject({ key: `refund#${buyer.chargeId}#1000#${T0}`, amount: -50_000, reason: "refund" });
    // redelivered (same event) and re-sent (new event id, same facts): nothing more
    expect((await fx.deliver(event)).json.outcome).toBe("duplicate");
    expect((await fx.deliver({ ...event, id: uniqueStripeId("evt") })).json.outcome).toBe("already_clawed_back");
    expect((await view(buyer.userId)).balance).toBe(10_000);
  });

  it("partial refunds take back proportionally, cumulative, and an older partial arriving late takes nothing", async () => {
    const buyer = await packBuyer("starter", 999);
    const thirty = refunded({ ...buyer, amount: 999, refunded: 300 });
    const fifty = refunded({ ...buyer, amount: 999, refunded: 500 });
    await fx.deliver(thirty);
    expect((await view(buyer.userId)).balance).toBe(60_000 - Math.round((50_000 * 300) / 999)); // 15,015
    await fx.deliver(fifty);
    expect((await view(buyer.userId)).balance).toBe(60_000 - Math.round((50_000 * 500) / 999)); // 25,025 in all
    const late = await fx.deliver({ ...thirty, id: uniqueStripeId("evt") });
    expect(late.json.outcome).toBe("already_clawed_back");
    const full = await fx.deliver(refunded({ ...buyer, amount: 999, refunded: 999 }));
    expect(full.json.outcome).toBe("clawed_back");
    expect((await view(buyer.userId)).balance).toBe(10_000);
    expect((await auditAccount(fx.deps.ledger, buyer.userId)).problems).toEqual([]);
  });

  it("two different partial refunds arriving concurrently take exactly the cumulative share", async () => {
    const buyer = await packBuyer("starter", 1_000);
    const answers = await Promise.all([
      fx.deliver(refunded({ ...buyer, amount: 1_000, refunded: 250 })),
      fx.deliver(refunded({ ...buyer, amount: 1_000, refunded: 600 })),
      fx.deliver(refunded({ ...buyer, amount: 1_000, refunded: 600 })),
    ]);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect((await view(buyer.userId)).balance).toBe(60_000 - 30_000);
  });

  it("a refund after the credits were spent takes the balance negative and the gate refuses", async () => {
    const buyer = await packBuyer();
    // 30,000 credits in five calls of 6,000 (a free plan's calls are small-tier and at most 20,000)
    for (let call = 0; call < 5; call++) {
      const hold = await authorizeChat(fx.deps.ledger, { userId: buyer.userId, requestId: `big-${call}`, model: SONNET, inputTokens: 2_000_000, maxOutputTokens: 0 });
      await settleChat(fx.deps.ledger, { holdId: hold.holdId, inputTokens: 2_000_000, outputTokens: 0 });
    }
    expect((await view(buyer.userId)).balance).toBe(30_000);
    const res = await fx.deliver(refunded({ ...buyer, amount: 1_000, refunded: 1_000 }));
    expect(res.json.outcome).toBe("clawed_back");
    expect((await view(buyer.userId)).balance).toBe(-20_000);
    await expect(
      authorizeChat(fx.deps.ledger, { userId: buyer.userId, requestId: "next", model: SONNET, inputTokens: 10, maxOutputTokens: 10 }),
    ).rejects.toMatchObject({ code: "INSUFFICIENT_CREDITS" });
    expect((await auditAccount(fx.deps.ledger, buyer.userId)).problems).toEqual([]);
  });

  it("a refunded subscription invoice takes back that invoice's allowance (found through invoice payments)", async () => {
    const sub = await subscribeAndPay(fx, { amountPaid: 2_000 });
    const paymentIntent = uniqueStripeId("pi");
    fx.stripe.invoicePayments.set(paymentIntent, sub.invoiceId);
    const chargeId = uniqueStripeId("ch");
    const res = await fx.deliver(refunded({ chargeId, paymentIntent, customer: sub.customer, amount: 2_000, refunded: 1_000 }));
    expect(res.json.outcome).toBe("clawed_back");
    const [lookup] = fx.stripe.requestsTo("/v1/invoice_payments", "GET");
    expect(lookup?.query).toMatchObject({ payment: { type: "payment_intent", payment_intent: paymentIntent }, limit: "1" });
    expect(await view(sub.userId)).toMatchObject({ balance: 110_000 - 50_000 });
    const [last] = await entries(sub.userId);
    expect(last).toMatchObject({ amount: -50_000, reason: "refund", refs: { purchase: sub.invoiceId, grant: `invoice#${sub.invoiceId}` } });
  });

  it("a refund of a payment that bought no credits is acknowledged, parked and takes nothing", async () => {
    const res = await fx.deliver(
      refunded({ chargeId: uniqueStripeId("ch"), paymentIntent: uniqueStripeId("pi"), customer: uniqueStripeId("cus"), amount: 500, refunded: 500 }),
    );
    expect(res.status).toBe(200);
    expect(res.json.outcome).toBe("waiting_for_purchase");
    expect(fx.stripe.requestsTo("/v1/invoice_payments")).toHaveLength(1); // looked for an invoice, found none
  });

  it("a Stripe outage while resolving an invoice refund answers 502 so Stripe retries", async () => {
    const sub = await subscribeAndPay(fx);
    const paymentIntent = uniqueStripeId("pi");
    fx.stripe.invoicePayments.set(paymentIntent, sub.invoiceId);
    const event = refunded({ chargeId: uniqueStripeId("ch"), paymentIntent, customer: sub.customer, amount: 2_000, refunded: 2_000 });
    fx.stripe.failNext({ match: "/v1/invoice_payments", status: 500 });
    expect((await fx.deliver(event)).status).toBe(502);
    expect((await view(sub.userId)).balance).toBe(110_000);
    expect((await fx.deliver(event)).json.outcome).toBe("clawed_back");
    expect((await view(sub.userId)).balance).toBe(10_000);
  });
});

describe("charge.dispute.created", () => {
  it("takes back what the disputed payment bought, once", async () => {
    const buyer = await packBuyer("pro", 5_000);
    const event = disputed({ ...buyer, amount: 5_000 });
    const res = await fx.deliver(event);
    expect(res.json.outcome).toBe("clawed_back");
    expect((await view(buyer.userId)).balance).toBe(10_000);
    const [last] = await entries(buyer.userId);
    expect(last).toMatchObject({ key: `dispute#${event.data.object.id}`, amount: -200_000, reason: "dispute" });
    expect((await fx.deliver({ ...event, id: uniqueStripeId("evt") })).json.outcome).toBe("already_clawed_back");
    expect((await view(buyer.userId)).balance).toBe(10_000);
  });

  it("after a partial refund, a dispute of the rest takes only what is left", async () => {
    const buyer = await packBuyer("starter", 1_000);
    await fx.deliver(refunded({ ...buyer, amount: 1_000, refunded: 400 }));
    expect((await view(buyer.userId)).balance).toBe(40_000);
    await fx.deliver(disputed({ ...buyer, amount: 600 }));
    expect((await view(buyer.userId)).balance).toBe(10_000);
    // even a (wrong) larger dispute cannot take more than the payment bought
    const extra = await fx.deliver(disputed({ ...buyer, amount: 1_000 }));
    expect(extra.json.outcome).toBe("nothing_left_to_claw_back");
    expect((await view(buyer.userId)).balance).toBe(10_000);
  });
});

describe("refund of an annual invoice (month 0 granted by it, months 1..11 by the schedule)", () => {
  /** An annual pro subscriber (120,000 cents for the year) whose first `months` scheduled months were granted. */
  async function annualSubscriber(months: number) {
    const sub = await subscribeAndPay(fx, { interval: "year", amountPaid: 120_000 });
    for (let month = 1; month <= months; month++) {
      fx.clock.value = Date.UTC(2026, month, 1, 13);
      expect((await grantAllowanceIfDue(fx.deps.ledger, sub.userId)).granted).toBe(true);
    }
    const paymentIntent = uniqueStripeId("pi");
    fx.stripe.invoicePayments.set(paymentIntent, sub.invoiceId);
    return { ...sub, paymentIntent, chargeId: uniqueStripeId("ch") };
  }

  it("a full refund after three scheduled months takes back all four months granted", async () => {
    const sub = await annualSubscriber(3);
    expect((await view(sub.userId)).balance).toBe(10_000 + 4 * 100_000);
    const res = await fx.deliver(
      chargeRefunded({ chargeId: sub.chargeId, paymentIntent: sub.paymentIntent, customer: sub.customer, amount: 120_000, refunded: 120_000 }),
    );
    expect(res.json.outcome).toBe("clawed_back");
    expect((await view(sub.userId)).balance).toBe(10_000); // the signup bonus: everything the year granted is back
    expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  });

  it("half refunded at month 5 takes the six months granted: with the six to come the user keeps half the year", async () => {
    const sub = await annualSubscriber(5);
    expect((await view(sub.userId)).balance).toBe(10_000 + 6 * 100_000);
    await fx.deliver(
      chargeRefunded({ chargeId: sub.chargeId, paymentIntent: sub.paymentIntent, customer: sub.customer, amount: 120_000, refunded: 60_000 }),
    );
    expect((await view(sub.userId)).balance).toBe(10_000);
    // the rest of the refund later takes nothing more than was granted (nothing left so far)
    const rest = await fx.deliver(
      chargeRefunded({ chargeId: sub.chargeId, paymentIntent: sub.paymentIntent, customer: sub.customer, amount: 120_000, refunded: 120_000 }),
    );
    expect(rest.json.outcome).toBe("nothing_left_to_claw_back");
    expect((await view(sub.userId)).balance).toBe(10_000);
  });

  it("a monthly invoice is refunded as before: its one month, proportionally", async () => {
    const sub = await subscribeAndPay(fx, { amountPaid: 2_000 });
    const paymentIntent = uniqueStripeId("pi");
    fx.stripe.invoicePayments.set(paymentIntent, sub.invoiceId);
    await fx.deliver(chargeRefunded({ chargeId: uniqueStripeId("ch"), paymentIntent, customer: sub.customer, amount: 2_000, refunded: 500 }));
    expect((await view(sub.userId)).balance).toBe(110_000 - 25_000);
  });
});

describe("a refunded annual subscription that stays active: the year nets what was not returned (schedule budget)", () => {
  /** An annual pro subscriber (100,000 credits a month, 120,000 cents the year) whose first `months` scheduled months were granted. */
  async function annualSubscriber(months: number) {
    const sub = await subscribeAndPay(fx, { interval: "year", amountPaid: 120_000 });
    await grantMonths(sub.userId, 1, months);
    const paymentIntent = uniqueStripeId("pi");
    fx.stripe.invoicePayments.set(paymentIntent, sub.invoiceId);
    const chargeId = uniqueStripeId("ch");
    /** charge.refunded with `refunded` cents returned in all, at month `month` (the event time) */
    const refund = (refunded: number, month: number) =>
      chargeRefunded({ chargeId, paymentIntent, customer: sub.customer, amount: 120_000, refunded, created: monthTime(month) });
    return { ...sub, paymentIntent, chargeId, refund };
  }
  /** Mid-afternoon of the 1st of `month` (2026), in epoch seconds: after that month's grant. */
  const monthTime = (month: number) => Date.UTC(2026, month, 1, 15) / 1000;

  /** Walks the schedule through months `from`..`to` as the sweep does; returns what each month granted. */
  async function grantMonths(userId: string, from: number, to: number): Promise<number[]> {
    const amounts: number[] = [];
    for (let month = from; month <= to; month++) {
      fx.clock.value = Date.UTC(2026, month, 1, 13);
      const result = await grantAllowanceIfDue(fx.deps.ledger, userId);
      if (!result.granted) throw new Error(`month ${month} was not due`);
      amounts.push(result.entry.amount);
    }
    return amounts;
  }
  /** the annual invoice's share budget (lib/ledger/paid-year.ts): what its remaining months may still grant */
  const budgetOf = async (userId: string, invoiceId: string) =>
    shareOf((await fx.deps.ledger.store.getAccount(userId))?.paidYears, T0 * 1000, `invoice#${invoiceId}`)?.budget;
  const MONTH = 100_000;
  const SIGNUP = 10_000;

  it("refunded in full at month 5: the six months granted are taken and months 6..11 grant nothing", async () => {
    const sub = await annualSubscriber(5);
    expect((await fx.deliver(sub.refund(120_000, 5))).json.outcome).toBe("clawed_back");
    expect((await view(sub.userId)).balance).toBe(SIGNUP);
    expect(await budgetOf(sub.userId, sub.invoiceId)).toEqual(0);
    expect(await grantMonths(sub.userId, 6, 11)).toEqual([0, 0, 0, 0, 0, 0]);
    // the year nets 12 × 100,000 × (1 − 120,000/120,000) = 0
    expect((await view(sub.userId)).balance).toBe(SIGNUP);
    const held = (await entries(sub.userId)).filter((entry) => entry.reason === "allowance" && entry.amount === 0);
    expect(held.map((entry) => entry.refs.withheld)).toEqual(Array(6).fill(MONTH));
    expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  });

  it("refunded in half at month 5: months 6..11 are the half the year keeps", async () => {
    const sub = await annualSubscriber(5);
    await fx.deliver(sub.refund(60_000, 5));
    expect((await view(sub.userId)).balance).toBe(SIGNUP); // six months granted, six months' worth returned
    // the six months to come are exactly what the year still owes: no budget binds them
    expect(await budgetOf(sub.userId, sub.invoiceId)).toBeUndefined();
    expect(await grantMonths(sub.userId, 6, 11)).toEqual(Array(6).fill(MONTH));
    // 12 × 100,000 × (1 − 60,000/120,000) = 600,000
    expect((await view(sub.userId)).balance).toBe(SIGNUP + 600_000);
  });

  it("refunded in half at month 2: three months taken now, then six more granted and the last three held back", async () => {
    const sub = await annualSubscriber(2);
    await fx.deliver(sub.refund(60_000, 2));
    expect((await view(sub.userId)).balance).toBe(SIGNUP);
    expect(await budgetOf(sub.userId, sub.invoiceId)).toEqual(600_000);
    expect(await grantMonths(sub.userId, 3, 11)).toEqual([MONTH, MONTH, MONTH, MONTH, MONTH, MONTH, 0, 0, 0]);
    expect((await view(sub.userId)).balance).toBe(SIGNUP + 600_000);
  });

  it("refunded in full, then the refund fails: what was taken and the months held back come back, and the year grants in full", async () => {
    const sub = await annualSubscriber(5);
    const re = uniqueStripeId("re");
    await fx.deliver(sub.refund(120_000, 5));
    expect(await grantMonths(sub.userId, 6, 7)).toEqual([0, 0]);
    expect((await view(sub.userId)).balance).toBe(SIGNUP);
    const failed = refundEvent("refund.failed", {
      refundId: re,
      chargeId: sub.chargeId,
      paymentIntent: sub.paymentIntent,
      amount: 120_000,
      refundCreated: monthTime(5),
      created: monthTime(7),
    });
    expect((await fx.deliver(failed)).json.outcome).toBe("reinstated");
    // 6 months taken + months 6 and 7 held back
    expect((await view(sub.userId)).balance).toBe(SIGNUP + 8 * MONTH);
    // nothing returned any more: the months to come grant in full, the budget is gone
    expect(await budgetOf(sub.userId, sub.invoiceId)).toBeUndefined();
    expect(await grantMonths(sub.userId, 8, 11)).toEqual(Array(4).fill(MONTH));
    expect((await view(sub.userId)).balance).toBe(SIGNUP + 12 * MONTH);
    expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  });

  it("disputed in half at month 5 and won after month 6: the year grants in full", async () => {
    const sub = await annualSubscriber(5);
    const dp = uniqueStripeId("dp");
    const about = { disputeId: dp, chargeId: sub.chargeId, paymentIntent: sub.paymentIntent, amount: 60_000 };
    await fx.deliver(disputeCreated({ ...about, created: monthTime(5) }));
    expect((await view(sub.userId)).balance).toBe(SIGNUP);
    expect(await grantMonths(sub.userId, 6, 6)).toEqual([MONTH]);
    expect((await fx.deliver(disputeClosed({ ...about, status: "won", created: monthTime(6) }))).json.outcome).toBe("reinstated");
    expect((await view(sub.userId)).balance).toBe(SIGNUP + 7 * MONTH);
    expect(await grantMonths(sub.userId, 7, 11)).toEqual(Array(5).fill(MONTH));
    expect((await view(sub.userId)).balance).toBe(SIGNUP + 12 * MONTH);
  });

  it("a redelivered refund, and one that crashed before the ledger heard of it, leave the same budget", async () => {
    const sub = await annualSubscriber(5);
    const store = fx.billing.store;
    let crashes = 1;
    fx.billing.store = {
      ...store,
      // the claw record is written, then the function dies before the ledger is told
      putClaw: async (claw, expectedVersion) => {
        const written = await store.putClaw(claw, expectedVersion);
        if (written && crashes-- > 0) throw new Error("killed after putClaw");
        return written;
      },
    };
    try {
      const refunded = sub.refund(120_000, 5);
      expect((await fx.deliver(refunded)).status).toBeGreaterThanOrEqual(500);
      expect((await view(sub.userId)).balance).toBe(SIGNUP + 6 * MONTH);
      expect(await budgetOf(sub.userId, sub.invoiceId)).toBeUndefined();
      expect((await fx.deliver(refunded)).json.outcome).toBe("clawed_back"); // Stripe's redelivery
      expect((await fx.deliver({ ...refunded, id: uniqueStripeId("evt") })).json.outcome).toBe("already_clawed_back");
    } finally {
      fx.billing.store = store;
    }
    expect((await view(sub.userId)).balance).toBe(SIGNUP);
    expect(await budgetOf(sub.userId, sub.invoiceId)).toEqual(0);
    expect(await grantMonths(sub.userId, 6, 11)).toEqual(Array(6).fill(0));
    expect((await view(sub.userId)).balance).toBe(SIGNUP);
  });
});
