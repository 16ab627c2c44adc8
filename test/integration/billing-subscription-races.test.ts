import { beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { BillingAccount, BillingStore } from "../../lib/billing/index.js";
import { ensureAccount } from "../../lib/ledger/index.js";
import { type BillingFixture, billingFixture, subscribeAndPay, T0 } from "../helpers/billing.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";

/**
 * Subscription events that race or tie (found in review): every write of the subscription state
 * is conditioned on the revision its decision read, and only a terminal end is remembered.
 */
captureLogs();
let fx: BillingFixture;
beforeAll(async () => {
  fx = await billingFixture();
});
beforeEach(() => fx.stripe.reset());

const account = async (userId: string) => (await fx.deps.ledger.store.getAccount(userId)) as BillingAccount;
const event = (type: "created" | "updated" | "deleted", subscription: unknown, created: number) =>
  stripeEvent(`customer.subscription.${type}`, { created, object: subscription });

async function customerOf(userId: string): Promise<string> {
  await ensureAccount(fx.deps.ledger, userId);
  const customer = uniqueStripeId("cus");
  await fx.billing.store.putCustomerUser(customer, userId, 0);
  await fx.billing.store.linkAccountCustomer(userId, customer);
  return customer;
}

/**
 * Holds the next call of a store method after the caller has read the account and decided, until
 * `release()`; `reached` resolves when the call is parked.
 */
function gate<K extends keyof BillingStore>(method: K) {
  const store = fx.billing.store as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const original = store[method] as (...args: unknown[]) => Promise<unknown>;
  let release!: () => void;
  let reachedResolve!: () => void;
  const go = new Promise<void>((resolve) => (release = resolve));
  const reached = new Promise<void>((resolve) => (reachedResolve = resolve));
  let armed = true;
  store[method] = async (...args: unknown[]) => {
    if (armed) {
      armed = false;
      reachedResolve();
      await go;
    }
    return original.apply(fx.billing.store, args);
  };
  return {
    reached,
    release: () => release(),
    restore: () => {
      store[method] = original;
    },
  };
}

describe("tie: created(incomplete) and updated(active) of a non-current subscription in the same second", () => {
  it("resubscribing after a cancelled subscription: the new subscription's same-second active counts (pro)", async () => {
    const a = await subscribeAndPay(fx);
    await fx.deliver(event("deleted", { ...a.subscription, status: "canceled" }, T0 + 600));
    expect((await account(a.userId)).plan).toBe("free");
    const bId = uniqueStripeId("sub");
    const b = (patch: object = {}) =>
      subscriptionObject({ id: bId, customer: a.customer, price: "price_pro_monthly", userId: a.userId, periodStart: T0 + 5000, periodEnd: T0 + 5000 + 2_678_400, ...patch });
    const created = await fx.deliver(event("created", b({ status: "incomplete" }), T0 + 5000));
    expect(created.status).toBe(200);
    const updated = await fx.deliver(event("updated", b(), T0 + 5000));
    expect(updated.status).toBe(200);
    const stored = await account(a.userId);
    expect(stored.plan).toBe("pro");
  });

  it("a second subscription going active in the second it was created is recorded, and promoted when A ends", async () => {
    const a = await subscribeAndPay(fx);
    const bId = uniqueStripeId("sub");
    const b = (patch: object = {}) =>
      subscriptionObject({ id: bId, customer: a.customer, price: "price_plus_monthly", userId: a.userId, periodStart: T0 + 50, periodEnd: T0 + 50 + 2_678_400, ...patch });
    const created = await fx.deliver(event("created", b({ status: "incomplete" }), T0 + 60));
    expect(created.status).toBe(200);
    const updated = await fx.deliver(event("updated", b(), T0 + 60));
    expect(updated.status).toBe(200);
    const res = await fx.deliver(event("deleted", { ...a.subscription, status: "canceled" }, T0 + 600));
    expect(res.status).toBe(200);
    const stored = await account(a.userId);
    expect(stored.plan).toBe("plus");
  });
});

describe("concurrent deliveries: decision on one read, write conditioned on another fact", () => {
  it("B created (decided while A was live) racing A deleted: B still ends up current (plus), never free while B is live", async () => {
    const a = await subscribeAndPay(fx);
    const bId = uniqueStripeId("sub");
    const b = subscriptionObject({ id: bId, customer: a.customer, price: "price_plus_monthly", userId: a.userId, periodStart: T0 + 50, periodEnd: T0 + 50 + 2_678_400 });
    const g = gate("putExtraSubscription");
    const bDelivery = fx.deliver(event("created", b, T0 + 60));
    await g.reached;
    const aDel = await fx.deliver(event("deleted", { ...a.subscription, status: "canceled" }, T0 + 600));
    expect(aDel.status).toBe(200);
    g.release();
    const bRes = await bDelivery;
    expect(bRes.status).toBe(200);
    g.restore();
    const stored = await account(a.userId);
    expect(stored.plan).toBe("plus");
  });

  it("B created racing B deleted: dead B is never recorded as live, nor promoted when A ends (free)", async () => {
    const a = await subscribeAndPay(fx);
    const bId = uniqueStripeId("sub");
    const b = (patch: object = {}) =>
      subscriptionObject({ id: bId, customer: a.customer, price: "price_pro_monthly", userId: a.userId, periodStart: T0 + 50, periodEnd: T0 + 50 + 2_678_400, ...patch });
    const g = gate("putExtraSubscription");
    const bCreated = fx.deliver(event("created", b(), T0 + 60));
    await g.reached;
    const bDel = await fx.deliver(event("deleted", b({ status: "canceled" }), T0 + 70));
    expect(bDel.status).toBe(200);
    g.release();
    const bRes = await bCreated;
    expect(bRes.status).toBe(200);
    g.restore();
    const mid = await account(a.userId);
    expect(Object.keys(mid.extraSubscriptions ?? {})).not.toContain(bId); // dead B is not a live extra
    const aDel = await fx.deliver(event("deleted", { ...a.subscription, status: "canceled" }, T0 + 600));
    expect(aDel.status).toBe(200);
    const stored = await account(a.userId);
    expect(stored.plan).toBe("free");
  });

  it("A cancelled; B created racing B deleted: dead B never becomes current (free)", async () => {
    const userId = uniqueUser("race");
    const customer = await customerOf(userId);
    const aId = uniqueStripeId("sub");
    const a = (patch: object = {}) => subscriptionObject({ id: aId, customer, price: "price_plus_monthly", userId, ...patch });
    await fx.deliver(event("updated", a(), T0));
    await fx.deliver(event("deleted", a({ status: "canceled" }), T0 + 10));
    const bId = uniqueStripeId("sub");
    const b = (patch: object = {}) => subscriptionObject({ id: bId, customer, price: "price_pro_monthly", userId, ...patch });
    const g = gate("replaceSubscription");
    const bCreated = fx.deliver(event("created", b(), T0 + 60));
    await g.reached;
    const bDel = await fx.deliver(event("deleted", b({ status: "canceled" }), T0 + 70));
    expect(bDel.status).toBe(200);
    g.release();
    const bRes = await bCreated;
    expect(bRes.status).toBe(200);
    g.restore();
    const stored = await account(userId);
    expect(stored.plan).toBe("free");
  });
});
