import { describe, expect, it } from "vitest";
import type { BillingAccount, BillingStore } from "../../lib/billing/index.js";
import { customerOf, subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject, uniqueStripeId } from "../helpers/stripe-events.js";

/**
 * Subscription events that race or tie (found in review): every write of the subscription state
 * is conditioned on the revision its decision read, and only a terminal end is remembered.
 */
captureLogs();
const fx = useBillingFixture();

const account = async (userId: string) => (await fx.deps.ledger.store.getAccount(userId)) as BillingAccount;

/** Delivers a signed event and expects Stripe to be told 200. */
async function deliverOk(evt: unknown): Promise<void> {
  expect((await fx.deliver(evt)).status).toBe(200);
}

/** A subscription of a user (their Stripe customer), as Stripe would report it, patched per event. */
function otherSubscription(owner: { customer: string; userId: string }, price: string, start = T0 + 50) {
  const id = uniqueStripeId("sub");
  const at = (patch: object = {}) =>
    subscriptionObject({ id, customer: owner.customer, price, userId: owner.userId, periodStart: start, periodEnd: start + 2_678_400, ...patch });
  return { id, at };
}
const event = (type: "created" | "updated" | "deleted", subscription: unknown, created: number) =>
  stripeEvent(`customer.subscription.${type}`, { created, object: subscription });


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

/**
 * Delivers `first` and parks it at the store call `method` (it has read the account and decided),
 * delivers `meanwhile` in full, then lets `first` finish: both must answer 200.
 */
async function race<K extends keyof BillingStore>(method: K, first: unknown, meanwhile: unknown): Promise<void> {
  const g = gate(method);
  try {
    const pending = fx.deliver(first);
    await g.reached;
    await deliverOk(meanwhile);
    g.release();
    expect((await pending).status).toBe(200);
  } finally {
    g.restore();
  }
}

describe("tie: created(incomplete) and updated(active) of a non-current subscription in the same second", () => {
  it("resubscribing after a cancelled subscription: the new subscription's same-second active counts (pro)", async () => {
    const a = await subscribeAndPay(fx);
    await deliverOk(event("deleted", { ...a.subscription, status: "canceled" }, T0 + 600));
    expect((await account(a.userId)).plan).toBe("free");
    const { id: bId, at: b } = otherSubscription(a, "price_pro_monthly", T0 + 5000);
    await deliverOk(event("created", b({ status: "incomplete" }), T0 + 5000));
    await deliverOk(event("updated", b(), T0 + 5000));
    const stored = await account(a.userId);
    expect(stored.plan).toBe("pro");
    expect(stored.subscription).toMatchObject({ id: bId, status: "active" });
  });

  it("a second subscription going active in the second it was created is recorded, and promoted when A ends", async () => {
    const a = await subscribeAndPay(fx);
    const { id: bId, at: b } = otherSubscription(a, "price_plus_monthly", T0 + 50);
    await deliverOk(event("created", b({ status: "incomplete" }), T0 + 60));
    await deliverOk(event("updated", b(), T0 + 60));
    await deliverOk(event("deleted", { ...a.subscription, status: "canceled" }, T0 + 600));
    const stored = await account(a.userId);
    expect(stored.plan).toBe("plus");
    expect(stored.subscription).toMatchObject({ id: bId, status: "active" });
  });
});

describe("concurrent deliveries: decision on one read, write conditioned on another fact", () => {
  it("B created (decided while A was live) racing A deleted: B still ends up current (plus), never free while B is live", async () => {
    const a = await subscribeAndPay(fx);
    const { id: bId, at: b } = otherSubscription(a, "price_plus_monthly", T0 + 50);
    await race("putExtraSubscription", event("created", b(), T0 + 60), event("deleted", { ...a.subscription, status: "canceled" }, T0 + 600));
    const stored = await account(a.userId);
    expect(stored.plan).toBe("plus");
    expect(stored.subscription?.id).toBe(bId);
  });

  it("B created racing B deleted: dead B is never recorded as live, nor promoted when A ends (free)", async () => {
    const a = await subscribeAndPay(fx);
    const { id: bId, at: b } = otherSubscription(a, "price_pro_monthly", T0 + 50);
    await race("putExtraSubscription", event("created", b(), T0 + 60), event("deleted", b({ status: "canceled" }), T0 + 70));
    const mid = await account(a.userId);
    expect(Object.keys(mid.extraSubscriptions ?? {})).not.toContain(bId); // dead B is not a live extra
    await deliverOk(event("deleted", { ...a.subscription, status: "canceled" }, T0 + 600));
    const stored = await account(a.userId);
    expect(stored.plan).toBe("free");
  });

  it("A cancelled; B created racing B deleted: dead B never becomes current (free)", async () => {
    const userId = uniqueUser("race");
    const customer = await customerOf(fx, userId);
    const { at: a } = otherSubscription({ customer, userId }, "price_plus_monthly", T0);
    await deliverOk(event("updated", a(), T0));
    await deliverOk(event("deleted", a({ status: "canceled" }), T0 + 10));
    const { at: b } = otherSubscription({ customer, userId }, "price_pro_monthly", T0 + 60);
    await race("replaceSubscription", event("created", b(), T0 + 60), event("deleted", b({ status: "canceled" }), T0 + 70));
    const stored = await account(userId);
    expect(stored.plan).toBe("free");
  });
});
