import { describe, expect, it } from "vitest";
import { loadConfig } from "../../lib/config.js";
import { deriveEvents } from "../../lib/events/derive.js";
import { account, change, entryChange, types } from "../helpers/table-changes.js";
import { DEFAULT_RETRY_POLICY, nextRetry } from "../../lib/events/retry.js";

/**
 * Review of issue 20 (outgoing webhooks): failing tests for defects found in the derivation and
 * the retry configuration. Pure: no DynamoDB, no queue.
 */


describe("review20: derivation", () => {
  it("a won dispute / failed refund that gives credits back (reason reinstate) is reported, like the clawback it undoes", () => {
    // lib/billing/refunds.ts writes a positive `reinstate` entry when a dispute is won or a refund
    // fails: the app was told credits.clawed_back, and must hear that the credits came back.
    const events = deriveEvents([
      entryChange({ reason: "dispute", amount: -50_000, seq: 4, balanceAfter: 0, key: "dispute#dp_1" }),
      entryChange({ reason: "reinstate", amount: 50_000, seq: 5, balanceAfter: 50_000, key: "reinstate#dp_1" }),
    ]);
    expect(types(events)).toEqual(["credits.clawed_back", "credits.granted"]);
  });

  it("a current subscription that ends while an extra live one is promoted reports subscription.canceled for the ended one", () => {
    // lib/billing/subscription.ts applySubscription, outcome "promoted": one replaceSubscription
    // write moves the account item's `subscription` from sub_1 (active) straight to sub_2 (active);
    // sub_1 is canceled (recorded in endedSubscriptions) but never appears as status "canceled".
    const sub = (id: string, status: string) => ({ id, status, priceId: "price_plus", periodStart: 0, periodEnd: 1, cancelAtPeriodEnd: false, lastEventAt: 1 });
    const before = account(30_000, { plan: "plus", subscription: sub("sub_1", "active") });
    // the promotion's write records the ended one in endedSubscriptions (lib/billing/dynamo-billing-store.ts)
    const after = { ...account(30_000, { plan: "plus", subscription: sub("sub_2", "active") }), endedSubscriptions: { sub_1: 1 } };
    const events = deriveEvents([change(before, after)]);
    expect(events.filter((event) => event.type === "subscription.canceled").map((event) => event.data)).toEqual([
      expect.objectContaining({ subscriptionId: "sub_1" }),
    ]);
    // replaced while only unpaid (not ended: it may be paid again) is no cancellation
    const { endedSubscriptions: _ended, ...unpaidReplaced } = after;
    expect(deriveEvents([change(before, unpaidReplaced)]).filter((event) => event.type === "subscription.canceled")).toEqual([]);
  });

  it("the documented order (data.seq, then data.position, then data.order) orders every pair of one user's events", () => {
    // docs/webhooks.md: "per user, sort by data.seq, then by data.position"; deliveries arrive in any
    // order. One record falling from ok to 0 yields credits.low then credits.depleted (and a plan
    // change yields plan.changed then credits.low) with the same seq AND the same position: the app
    // cannot tell which came last, so "last event wins" may leave it at "low" for a depleted user.
    const events = deriveEvents([change(account(5_000), account(0)), change(account(3_000, { seq: 2 }), account(3_000, { seq: 2, plan: "pro" }))]);
    expect(types(events)).toEqual(["credits.low", "credits.depleted", "plan.changed", "credits.low"]);
    const keys = events.map((event) => `${event.data.seq}/${event.data.position}/${event.data.order}`);
    expect(new Set(keys).size).toBe(events.length);
  });
});

describe("review20: retry window vs the queue", () => {
  it("every give-up window the config accepts fits the queue: retries end before the 4-day retention and within 60 receives", () => {
    // lib/config.ts accepts WEBHOOK_GIVE_UP_AFTER_SECONDS up to 13 days; infra/constructs/events.ts
    // keeps WebhookQueue messages 4 days (retentionPeriod) and dead-letters after 60 receives. A
    // message still retrying on day 4 is deleted by SQS: neither delivered nor dead-lettered.
    const RETENTION_MS = 4 * 86_400_000; // infra/constructs/events.ts WebhookQueue retentionPeriod
    const MAX_RECEIVES = 60; // infra/constructs/events.ts WEBHOOK_MAX_RECEIVE_COUNT
    const configWith = (giveUpSeconds: number) =>
      loadConfig(
        {
          TABLE_NAME: "table-x",
          APP_WEBHOOK_URL: "https://app.example/hooks",
          APP_WEBHOOK_SECRET: `whsec_${"A".repeat(32)}`,
          WEBHOOK_QUEUE_URL: "https://sqs.example/q",
          WEBHOOK_DLQ_URL: "https://sqs.example/d",
          WEBHOOK_GIVE_UP_AFTER_SECONDS: String(giveUpSeconds),
        },
        "deliver",
      );
    // a window the queue cannot hold is refused at cold start (it was accepted up to 13 days)
    expect(() => configWith(13 * 86_400)).toThrow(/WEBHOOK_GIVE_UP_AFTER_SECONDS/);
    expect(() => configWith(3 * 86_400 + 1)).toThrow(/WEBHOOK_GIVE_UP_AFTER_SECONDS/);
    // the longest it accepts fits the queue
    const giveUpSeconds = 3 * 86_400;
    const cfg = configWith(giveUpSeconds);
    expect(cfg.WEBHOOK_GIVE_UP_AFTER_SECONDS).toBe(giveUpSeconds);
    const policy = { ...DEFAULT_RETRY_POLICY, baseSeconds: cfg.WEBHOOK_RETRY_BASE_SECONDS, giveUpAfterMs: cfg.WEBHOOK_GIVE_UP_AFTER_SECONDS * 1000 };
    // an endpoint that always fails: follow the schedule until the deliverer gives up
    let now = 0;
    let attempt = 1;
    for (;;) {
      const decision = nextRetry(policy, attempt, 0, now, 0.5);
      if ("giveUp" in decision) break;
      now += decision.retryInSeconds * 1000;
      attempt += 1;
    }
    expect({ lastAttemptAtDays: now / 86_400_000, receives: attempt }).toEqual({
      lastAttemptAtDays: expect.toSatisfy((days: number) => days * 86_400_000 < RETENTION_MS),
      receives: expect.toSatisfy((receives: number) => receives <= MAX_RECEIVES),
    });
  });
});
