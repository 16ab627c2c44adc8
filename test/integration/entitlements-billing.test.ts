import { describe, expect, it } from "vitest";
import { auditAccount, authorizeChat, settleChat } from "../../lib/ledger/index.js";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { OPUS, SONNET } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent } from "../helpers/stripe-events.js";

/**
 * Issue 23 through billing: a plan's entitlements follow the plan Stripe's events give the account,
 * from the write that applies them — a paid subscription lets opus in, its end (a cancellation, or
 * Stripe ending it after a refund) shuts it out, and a hold taken before settles.
 */
captureLogs();
const fx = useBillingFixture();
const small = { inputTokens: 100, maxOutputTokens: 100 };

describe("entitlements follow the subscription's events", () => {
  it("paid pro admits opus; customer.subscription.deleted makes the account free at once; the hold taken on pro settles", async () => {
    const subscriber = await subscribeAndPay(fx, { plan: "pro" });
    const { userId } = subscriber;
    const hold = await authorizeChat(fx.deps.ledger, { userId, requestId: "on-pro", model: OPUS, ...small });
    expect(hold.plan).toBe("pro");
    const ended = await fx.deliver(stripeEvent("customer.subscription.deleted", { created: T0 + 600, object: { ...subscriber.subscription, status: "canceled" } }));
    expect(ended.json.outcome).toBe("subscription_applied");
    await expect(authorizeChat(fx.deps.ledger, { userId, requestId: "after-end", model: OPUS, ...small })).rejects.toMatchObject({
      status: 403,
      code: "PLAN_REQUIRED",
      details: { plan: "free", requiredPlan: "plus", reason: "MODEL_NOT_IN_PLAN" },
    });
    // what the free plan includes still goes through
    expect((await authorizeChat(fx.deps.ledger, { userId, requestId: "sonnet", model: SONNET, ...small })).plan).toBe("free");
    expect((await settleChat(fx.deps.ledger, { holdId: hold.holdId, inputTokens: 100, outputTokens: 80 })).status).toBe("settled");
    expect((await auditAccount(fx.deps.ledger, userId)).problems).toEqual([]);
  });
});
