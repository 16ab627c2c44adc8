import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { BillingAccount } from "../../lib/billing/index.js";
import { auditAccount, authorizeChat, getBalance, settleChat } from "../../lib/ledger/index.js";
import { T0, useBillingFixture } from "../helpers/billing.js";
import { SONNET } from "../helpers/http.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { chargeRefunded, stripeEvent, uniqueStripeId } from "../helpers/stripe-events.js";
import { disputeClosed, disputeCreated, refundEvent } from "../helpers/stripe-reversals.js";

/**
 * Money that comes back to the merchant after a refund or a dispute took credits: a won dispute
 * (or an inquiry closed without funds withdrawn), a refund that failed or was canceled. What the
 * reversed fact took beyond what the money still returned stands for is given back, once, in any
 * arrival order. A starter pack: 50,000 credits for 1,000 cents; every account starts with the
 * 10,000-credit signup bonus.
 */
captureLogs();
const fx = useBillingFixture();

const SIGNUP = 10_000;
const PACK = 50_000;
const view = (userId: string) => getBalance(fx.deps.ledger, userId);
const entriesOf = (userId: string) => fx.deps.ledger.store.allEntries(userId);
/** Credits moved by refunds, disputes and reinstatements, net (negative: taken). */
const clawNet = async (userId: string) =>
  (await entriesOf(userId))
    .filter((entry) => ["refund", "dispute", "reinstate"].includes(entry.reason))
    .reduce((sum, entry) => sum + entry.amount, 0);

/** A user whose starter pack (1,000 cents) was paid and granted; `charge` builds events about its charge. */
async function packBuyer() {
  const userId = uniqueUser("reversal");
  const started = await fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/checkout", { pack: "starter" });
  expect(started.status).toBe(200);
  const account = (await fx.deps.ledger.store.getAccount(userId)) as BillingAccount;
  const completed = stripeEvent("checkout.session.completed.payment", {
    object: {
      id: account.pendingPackCheckout?.sessionId,
      customer: account.stripeCustomerId,
      payment_intent: uniqueStripeId("pi"),
      amount_total: 1_000,
      metadata: { userId, pack: "starter" },
    },
  });
  return { userId, completed, ...chargeEvents(account.stripeCustomerId as string, completed.data.object.payment_intent) };
}

function chargeEvents(customer: string, paymentIntent: string) {
  const chargeId = uniqueStripeId("ch");
  const ids = { chargeId, paymentIntent };
  return {
    ...ids,
    /** charge.refunded: `total` is the charge's amount_refunded at event time `at` (seconds after T0) */
    refunded: (total: number, at: number) => chargeRefunded({ ...ids, customer, amount: 1_000, refunded: total, created: T0 + at }),
    /** a refund created at `createdAt` that failed (or was canceled…) at `at` */
    refundFailed: (refundId: string, amount: number, createdAt: number, at: number, type: "refund.failed" | "charge.refund.updated" = "refund.failed", status: "failed" | "canceled" | "succeeded" = "failed") =>
      refundEvent(type, { ...ids, refundId, amount, refundCreated: T0 + createdAt, created: T0 + at, status }),
    disputed: (disputeId: string, amount: number) => disputeCreated({ ...ids, disputeId, amount }),
    closed: (disputeId: string, amount: number, status: "won" | "lost" | "warning_closed") => disputeClosed({ ...ids, disputeId, amount, status, created: T0 + 500 }),
  };
}

async function granted() {
  const buyer = await packBuyer();
  expect((await fx.deliver(buyer.completed)).json.outcome).toBe("pack_granted");
  return buyer;
}

const outcome = async (event: unknown) => {
  const answer = await fx.deliver(event);
  expect(answer.status).toBe(200);
  return answer.json.outcome as string;
};

describe("charge.dispute.closed", () => {
  it("won: what the dispute took comes back once, to the bucket it was taken from", async () => {
    const buyer = await granted();
    const dp = uniqueStripeId("dp");
    expect(await outcome(buyer.disputed(dp, 1_000))).toBe("clawed_back");
    expect(await view(buyer.userId)).toMatchObject({ balance: SIGNUP, purchased: 0 });
    const won = buyer.closed(dp, 1_000, "won");
    expect(await outcome(won)).toBe("reinstated");
    expect(await view(buyer.userId)).toMatchObject({ balance: SIGNUP + PACK, purchased: PACK, allowance: SIGNUP });
    const last = (await entriesOf(buyer.userId)).find((entry) => entry.key === `reinstate#${dp}`);
    expect(last).toMatchObject({ amount: PACK, reason: "reinstate", bucket: "purchased", refs: { dispute: dp, charge: buyer.chargeId } });
    // redelivered (same event) and re-sent (another event, same fact): nothing more
    expect(await outcome(won)).toBe("duplicate");
    expect(await outcome({ ...won, id: uniqueStripeId("evt") })).toBe("already_reinstated");
    expect((await view(buyer.userId)).balance).toBe(SIGNUP + PACK);
    expect((await auditAccount(fx.deps.ledger, buyer.userId)).problems).toEqual([]);
  });

  it("an inquiry closed without funds withdrawn (warning_closed) gives back what it took", async () => {
    const buyer = await granted();
    const dp = uniqueStripeId("dp");
    await outcome(buyer.disputed(dp, 500));
    expect((await view(buyer.userId)).balance).toBe(SIGNUP + PACK / 2);
    expect(await outcome(buyer.closed(dp, 500, "warning_closed"))).toBe("reinstated");
    expect((await view(buyer.userId)).balance).toBe(SIGNUP + PACK);
  });

  it("lost: the take stays; a loss reported before the dispute's creation takes it, once", async () => {
    const kept = await granted();
    const dp = uniqueStripeId("dp");
    await outcome(kept.disputed(dp, 1_000));
    expect(await outcome(kept.closed(dp, 1_000, "lost"))).toBe("already_clawed_back");
    expect((await view(kept.userId)).balance).toBe(SIGNUP);

    const early = await granted();
    const dp2 = uniqueStripeId("dp");
    expect(await outcome(early.closed(dp2, 1_000, "lost"))).toBe("clawed_back");
    expect(await outcome(early.disputed(dp2, 1_000))).toBe("already_clawed_back");
    expect((await view(early.userId)).balance).toBe(SIGNUP);
  });

  it("won before its creation arrives: nothing is taken and nothing given", async () => {
    const buyer = await granted();
    const dp = uniqueStripeId("dp");
    expect(await outcome(buyer.closed(dp, 1_000, "won"))).toBe("nothing_to_reinstate");
    expect(await outcome(buyer.disputed(dp, 1_000))).toBe("nothing_left_to_claw_back");
    expect((await view(buyer.userId)).balance).toBe(SIGNUP + PACK);
    expect(await clawNet(buyer.userId)).toBe(0);
  });

  it("gives back only what the money still returned does not cover", async () => {
    const buyer = await granted();
    const dp = uniqueStripeId("dp");
    await outcome(buyer.refunded(400, 10)); // 40%: 20,000
    await outcome(buyer.disputed(dp, 600)); // the other 60%: 30,000
    expect((await view(buyer.userId)).balance).toBe(SIGNUP);
    await outcome(buyer.closed(dp, 600, "won"));
    expect((await view(buyer.userId)).balance).toBe(SIGNUP + 30_000);

    // a dispute of money already refunded took nothing, so winning it gives nothing
    const refunded = await granted();
    const dp2 = uniqueStripeId("dp");
    await outcome(refunded.refunded(1_000, 10));
    expect(await outcome(refunded.disputed(dp2, 1_000))).toBe("nothing_left_to_claw_back");
    expect(await outcome(refunded.closed(dp2, 1_000, "won"))).toBe("nothing_to_reinstate");
    expect((await view(refunded.userId)).balance).toBe(SIGNUP);
  });

  it("after the credits were spent, a won dispute repays the debt it left", async () => {
    const buyer = await granted();
    // 30,000 credits in five calls of 6,000 (a free plan's calls are small-tier and at most 20,000)
    for (let call = 0; call < 5; call++) {
      const hold = await authorizeChat(fx.deps.ledger, { userId: buyer.userId, requestId: `big-${call}`, model: SONNET, inputTokens: 2_000_000, maxOutputTokens: 0 });
      await settleChat(fx.deps.ledger, { holdId: hold.holdId, inputTokens: 2_000_000, outputTokens: 0 });
    }
    const dp = uniqueStripeId("dp");
    await outcome(buyer.disputed(dp, 1_000));
    expect((await view(buyer.userId)).balance).toBe(SIGNUP + PACK - 30_000 - PACK);
    await outcome(buyer.closed(dp, 1_000, "won"));
    expect((await view(buyer.userId)).balance).toBe(SIGNUP + PACK - 30_000);
    expect((await auditAccount(fx.deps.ledger, buyer.userId)).problems).toEqual([]);
  });
});

describe("refunds that fail or are canceled", () => {
  it("refund.failed gives back what the refund took, once; charge.refund.updated about the same failure gives nothing more", async () => {
    const buyer = await granted();
    await outcome(buyer.refunded(1_000, 10));
    expect((await view(buyer.userId)).balance).toBe(SIGNUP);
    const re = uniqueStripeId("re");
    expect(await outcome(buyer.refundFailed(re, 1_000, 10, 100))).toBe("reinstated");
    expect(await view(buyer.userId)).toMatchObject({ balance: SIGNUP + PACK, purchased: PACK });
    const entry = (await entriesOf(buyer.userId)).find((candidate) => candidate.key === `reinstate#${re}`);
    expect(entry).toMatchObject({ amount: PACK, reason: "reinstate", bucket: "purchased", refs: { refund: re } });
    expect(await outcome(buyer.refundFailed(re, 1_000, 10, 101, "charge.refund.updated"))).toBe("already_reinstated");
    expect((await view(buyer.userId)).balance).toBe(SIGNUP + PACK);
  });

  it("charge.refund.updated: a canceled refund gives back; one that succeeded changes nothing", async () => {
    const buyer = await granted();
    await outcome(buyer.refunded(500, 10));
    const re = uniqueStripeId("re");
    expect(await outcome(buyer.refundFailed(re, 500, 10, 50, "charge.refund.updated", "succeeded"))).toBe("ignored_refund_status");
    expect((await view(buyer.userId)).balance).toBe(SIGNUP + PACK / 2);
    expect(await outcome(buyer.refundFailed(re, 500, 10, 60, "charge.refund.updated", "canceled"))).toBe("reinstated");
    expect((await view(buyer.userId)).balance).toBe(SIGNUP + PACK);
  });

  it("a failure delivered before the charge.refunded it reverses: nothing taken, nothing given; a later refund of the same total still takes", async () => {
    const buyer = await granted();
    const re = uniqueStripeId("re");
    expect(await outcome(buyer.refundFailed(re, 1_000, 10, 100))).toBe("nothing_to_reinstate");
    expect(await outcome(buyer.refunded(1_000, 10))).toBe("nothing_left_to_claw_back");
    expect((await view(buyer.userId)).balance).toBe(SIGNUP + PACK);
    expect(await clawNet(buyer.userId)).toBe(0);
    // the merchant refunds again: Stripe's total is 1,000 again (the failed refund no longer counts)
    expect(await outcome(buyer.refunded(1_000, 200))).toBe("clawed_back");
    expect((await view(buyer.userId)).balance).toBe(SIGNUP);
  });

  it("Stripe lowers amount_refunded when a refund fails: a later total seen before is a new refund, not a redelivery", async () => {
    const buyer = await granted();
    const a = uniqueStripeId("re");
    await outcome(buyer.refunded(300, 10)); // refund A: 300 of 1,000 → 15,000
    await outcome(buyer.refunded(500, 20)); // refund B: 200 more → 10,000
    expect((await view(buyer.userId)).balance).toBe(SIGNUP + PACK - 25_000);
    await outcome(buyer.refundFailed(a, 300, 10, 30)); // A fails: its 15,000 back
    expect((await view(buyer.userId)).balance).toBe(SIGNUP + PACK - 10_000);
    await outcome(buyer.refunded(500, 40)); // refund C: 300; Stripe's total is B + C = 500 again
    expect((await view(buyer.userId)).balance).toBe(SIGNUP + PACK - 25_000);
    // every event again, newest first, as other events: nothing moves
    for (const event of [buyer.refunded(500, 40), buyer.refundFailed(a, 300, 10, 30), buyer.refunded(500, 20), buyer.refunded(300, 10)]) {
      await fx.deliver(event);
    }
    expect((await view(buyer.userId)).balance).toBe(SIGNUP + PACK - 25_000);
    expect((await auditAccount(fx.deps.ledger, buyer.userId)).problems).toEqual([]);
  });

  it("refund and failure before the pack is granted: applied with the grant, they cancel out", async () => {
    const buyer = await packBuyer();
    const re = uniqueStripeId("re");
    expect(await outcome(buyer.refunded(1_000, 10))).toBe("waiting_for_purchase");
    expect(await outcome(buyer.refundFailed(re, 1_000, 10, 100))).toBe("waiting_for_purchase");
    expect(await outcome(buyer.completed)).toBe("pack_granted");
    expect((await view(buyer.userId)).balance).toBe(SIGNUP + PACK);
    expect(await clawNet(buyer.userId)).toBe(0);
  });
});

describe("any order, any number of copies, concurrently", () => {
  it("a refund and its failure, a dispute and its win, delivered together many times: nothing taken in the end", async () => {
    const buyer = await granted();
    const re = uniqueStripeId("re");
    const dp = uniqueStripeId("dp");
    const events = [buyer.refunded(400, 10), buyer.refundFailed(re, 400, 10, 100), buyer.disputed(dp, 600), buyer.closed(dp, 600, "won")];
    const copies = events.flatMap((event) => [event, event, { ...event, id: uniqueStripeId("evt") }]);
    const answers = await Promise.all(copies.map((event) => fx.deliver(event)));
    // a copy that lost a race may answer 5xx (Stripe redelivers it): deliver those again
    for (const [index, answer] of answers.entries()) if (answer.status >= 500) expect((await fx.deliver(copies[index])).status).toBe(200);
    expect((await view(buyer.userId)).balance).toBe(SIGNUP + PACK);
    expect(await clawNet(buyer.userId)).toBe(0);
    expect((await auditAccount(fx.deps.ledger, buyer.userId)).problems).toEqual([]);
  });

  it("every arrival order of a charge's refunds, failure, dispute and win ends with the same balance", async () => {
    // A 300 then B 200 (total 500); A fails; C 300 (total 500 again); a 500 dispute, won.
    // What stands: B + C = 500 of 1,000 cents, half the pack.
    await fc.assert(
      fc.asyncProperty(fc.shuffledSubarray([0, 1, 2, 3, 4, 5, 0, 3], { minLength: 8, maxLength: 8 }), async (order) => {
        const buyer = await granted();
        const a = uniqueStripeId("re");
        const dp = uniqueStripeId("dp");
        const events = [
          buyer.refunded(300, 10),
          buyer.refunded(500, 20),
          buyer.refundFailed(a, 300, 10, 30),
          buyer.refunded(500, 40),
          buyer.disputed(dp, 500),
          buyer.closed(dp, 500, "won"),
        ];
        for (const index of order) expect((await fx.deliver(events[index])).status).toBe(200);
        expect((await view(buyer.userId)).balance).toBe(SIGNUP + PACK / 2);
        expect(await clawNet(buyer.userId)).toBe(-PACK / 2);
      }),
      { numRuns: 12 },
    );
  });
});
