import { beforeAll, describe, expect, it } from "vitest";
import {
  type BillingDeps,
  createPriceBook,
  PARKED_RETRY_BACKOFF,
  replayParkedEvent,
  replayParkedEvents,
  retryDueParkedEvents,
} from "../../lib/billing/index.js";
import { catalog } from "../../lib/catalog.js";
import { auditAccount, ensureAccount, getBalance } from "../../lib/ledger/index.js";
import { type BillingFixture, billingFixture, customerOf, invoicePaid, TEST_PRICES } from "../helpers/billing.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";

/**
 * The sweep's automatic retry of parked events (lib/billing/parked.ts, retryDueParkedEvents): an
 * event whose cause went away resolves by itself, not before its backoff time, with its attempts
 * counted; one run retries at most its limit; racing an operator's replay still grants once.
 */
const logs = captureLogs();
let fx: BillingFixture;
beforeAll(async () => {
  fx = await billingFixture();
});

const MINUTE = 60_000;
const balance = async (userId: string) => (await getBalance(fx.deps.ledger, userId)).balance;
const parked = (eventId: string) => fx.billing.store.getParkedEvent(eventId);
/** Dismisses every event still parked (earlier tests' in this table), so each test starts from nothing parked. */
async function drain() {
  for (const event of await fx.billing.store.listParkedEvents()) {
    if (event.status !== "parked") continue;
    await fx.billing.store.closeParkedEvent(event.eventId, { status: "dismissed", dismissReason: "test cleanup" }, fx.clock.value, 60);
  }
}

describe("the sweep retries parked events with backoff", () => {
  it("an invoice of a customer not mapped yet resolves by the sweep once the mapping exists, not before its next attempt", async () => {
    await drain();
    const userId = uniqueUser("retry-customer");
    await ensureAccount(fx.deps.ledger, userId);
    const customer = uniqueStripeId("cus");
    const paid = invoicePaid({ invoiceId: uniqueStripeId("in"), customer, subscriptionId: uniqueStripeId("sub"), userId: "", price: TEST_PRICES.STRIPE_PRICE_PRO_MONTHLY });
    const parkedAt = fx.clock.value;
    expect((await fx.deliver(paid)).json.outcome).toBe("parked_unknown_customer");
    expect(await parked(paid.id)).toMatchObject({ status: "parked", attempts: 1, nextAttemptAt: parkedAt + 5 * MINUTE });

    // not due yet: the sweep leaves it alone
    fx.clock.value = parkedAt + 5 * MINUTE - 1;
    expect(await retryDueParkedEvents(fx.billing, { limit: 10 })).toEqual({ retried: 0, resolved: 0, stillParked: 0, failed: 0 });
    expect(await parked(paid.id)).toMatchObject({ attempts: 1 });

    // due, but the customer is still unknown: one more attempt, the next one twice as late
    fx.clock.value = parkedAt + 5 * MINUTE;
    expect(await retryDueParkedEvents(fx.billing, { limit: 10 })).toEqual({ retried: 1, resolved: 0, stillParked: 1, failed: 0 });
    expect(await parked(paid.id)).toMatchObject({ status: "parked", reason: "unknown_customer", attempts: 2, nextAttemptAt: fx.clock.value + 10 * MINUTE });
    expect(logs.lines()).toContainEqual(expect.objectContaining({ level: "WARN", message: "parked stripe event still cannot be applied", eventId: paid.id, attempts: 2 }));

    // the mapping is written (by any path that does not replay it itself), still before the next attempt
    await fx.billing.store.putCustomerUser(customer, userId, fx.clock.value);
    fx.clock.value += 10 * MINUTE - 1;
    expect((await retryDueParkedEvents(fx.billing, { limit: 10 })).retried).toBe(0);
    expect(await balance(userId)).toBe(10_000);

    fx.clock.value += 1;
    expect(await retryDueParkedEvents(fx.billing, { limit: 10 })).toEqual({ retried: 1, resolved: 1, stillParked: 0, failed: 0 });
    expect(await balance(userId)).toBe(10_000 + 100_000);
    const resolved = await parked(paid.id);
    expect(resolved).toMatchObject({ status: "resolved", outcome: "allowance_granted", attempts: 2 });
    expect(resolved?.nextAttemptAt).toBeUndefined();

    // nothing is due any more; a later run, a replay and Stripe's redelivery change nothing
    fx.clock.value += 24 * 60 * MINUTE;
    expect((await retryDueParkedEvents(fx.billing, { limit: 10 })).retried).toBe(0);
    expect(await replayParkedEvent(fx.billing, paid.id)).toEqual({ eventId: paid.id, result: "not_parked", status: "resolved" });
    expect((await fx.deliver(paid)).json.outcome).toBe("duplicate");
    expect(await balance(userId)).toBe(110_000);
    expect((await auditAccount(fx.deps.ledger, userId)).ok).toBe(true);
  });

  it("a checkout whose subscription Stripe could not return resolves by the sweep once Stripe has it; a failing retry backs off too", async () => {
    await drain();
    const userId = uniqueUser("retry-sub");
    const customer = await customerOf(fx, userId);
    const subscriptionId = uniqueStripeId("sub");
    const completed = stripeEvent("checkout.session.completed.subscription", {
      object: { id: uniqueStripeId("cs_test"), customer, subscription: subscriptionId, metadata: { userId, plan: "pro", interval: "month" } },
    });
    expect((await fx.deliver(completed)).json.outcome).toBe("parked_subscription_unavailable");
    const first = await parked(completed.id);
    expect(first).toMatchObject({ attempts: 1, nextAttemptAt: fx.clock.value + 5 * MINUTE });

    // Stripe answers 500 (with the SDK's own retries off in this fixture): the retry fails, is
    // counted, and its next attempt still moves on
    fx.clock.value = first?.nextAttemptAt as number;
    fx.stripe.failNext({ status: 500 });
    expect(await retryDueParkedEvents(fx.billing, { limit: 10 })).toEqual({ retried: 1, resolved: 0, stillParked: 0, failed: 1 });
    expect(await parked(completed.id)).toMatchObject({ status: "parked", attempts: 2, nextAttemptAt: fx.clock.value + 10 * MINUTE });
    expect(logs.lines()).toContainEqual(expect.objectContaining({ level: "ERROR", message: "parked stripe event retry failed", eventId: completed.id }));

    fx.stripe.subscriptions.set(subscriptionId, subscriptionObject({ id: subscriptionId, customer, price: TEST_PRICES.STRIPE_PRICE_PRO_MONTHLY, userId }));
    fx.clock.value += 10 * MINUTE;
    expect(await retryDueParkedEvents(fx.billing, { limit: 10 })).toMatchObject({ retried: 1, resolved: 1 });
    expect(await parked(completed.id)).toMatchObject({ status: "resolved", outcome: "subscription_applied" });
    expect((await fx.deps.ledger.store.getAccount(userId))?.plan).toBe("pro");
  });

  it("retries at most its limit per run, the longest due first; the rest stays due for the next run", async () => {
    await drain();
    const userId = uniqueUser("retry-limit");
    const customer = await customerOf(fx, userId);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const event = invoicePaid({ invoiceId: uniqueStripeId("in"), customer, subscriptionId: uniqueStripeId("sub"), userId, price: `price_unconfigured_${i}` });
      expect((await fx.deliver(event)).json.outcome).toBe("parked_unknown_price");
      ids.push(event.id);
      fx.clock.value += 1_000;
    }
    // a configuration problem backs off longer: first retry after an hour
    fx.clock.value += PARKED_RETRY_BACKOFF.unknown_price?.firstMs as number;
    expect(await retryDueParkedEvents(fx.billing, { limit: 2 })).toMatchObject({ retried: 2, stillParked: 2 });
    expect((await Promise.all(ids.map(parked))).map((event) => event?.attempts)).toEqual([2, 2, 1]);
    expect(await retryDueParkedEvents(fx.billing, { limit: 2 })).toMatchObject({ retried: 1, stillParked: 1 });
    expect((await Promise.all(ids.map(parked))).map((event) => event?.attempts)).toEqual([2, 2, 2]);
    // and none once the run is out of time
    fx.clock.value += 48 * 60 * MINUTE;
    expect(await retryDueParkedEvents(fx.billing, { limit: 10, stop: () => true })).toMatchObject({ retried: 0 });
    expect(await retryDueParkedEvents(fx.billing, { limit: 0 })).toMatchObject({ retried: 0 });
    expect(await balance(userId)).toBe(10_000);
  });

  it("never retries an object it could not read (an operator replays it after a new parser ships)", async () => {
    await drain();
    const userId = uniqueUser("retry-malformed");
    const customer = await customerOf(fx, userId);
    const event = invoicePaid({ invoiceId: uniqueStripeId("in"), customer, subscriptionId: uniqueStripeId("sub"), userId, price: TEST_PRICES.STRIPE_PRICE_PRO_MONTHLY });
    delete event.data.object.amount_paid;
    expect((await fx.deliver(event)).json.outcome).toBe("parked_malformed_object");
    expect((await parked(event.id))?.nextAttemptAt).toBeUndefined();
    fx.clock.value += 30 * 24 * 60 * MINUTE;
    expect((await retryDueParkedEvents(fx.billing, { limit: 10 })).retried).toBe(0);
    expect(await parked(event.id)).toMatchObject({ status: "parked", attempts: 1 });
  });

  it("grants once when the sweep's retry races an operator's replays", async () => {
    await drain();
    const price = "price_plus_monthly_fixed_later";
    const userId = uniqueUser("retry-race");
    const customer = await customerOf(fx, userId);
    const event = invoicePaid({ invoiceId: uniqueStripeId("in"), customer, subscriptionId: uniqueStripeId("sub"), userId, price });
    expect((await fx.deliver(event)).json.outcome).toBe("parked_unknown_price");
    fx.clock.value += PARKED_RETRY_BACKOFF.unknown_price?.firstMs as number;
    const fixed: BillingDeps = { ...fx.billing, prices: createPriceBook({ ...TEST_PRICES, STRIPE_PRICE_PLUS_MONTHLY: price }, catalog) };
    const [sweep, one, all] = await Promise.all([
      retryDueParkedEvents(fixed, { limit: 10 }),
      replayParkedEvent(fixed, event.id),
      replayParkedEvents(fixed),
    ]);
    expect(sweep).toMatchObject({ stillParked: 0, failed: 0 });
    expect(one.result).not.toBe("still_parked");
    expect(all.filter((result) => result.result === "still_parked")).toEqual([]);
    expect(await parked(event.id)).toMatchObject({ status: "resolved" });
    expect(await balance(userId)).toBe(10_000 + 40_000);
    // whatever comes after changes nothing
    fx.clock.value += 48 * 60 * MINUTE;
    expect((await retryDueParkedEvents(fixed, { limit: 10 })).retried).toBe(0);
    expect((await fx.deliver(event)).json.outcome).toBe("duplicate");
    expect(await balance(userId)).toBe(50_000);
    expect((await auditAccount(fx.deps.ledger, userId)).ok).toBe(true);
  });
});
