import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { catalog, PLAN_IDS, type PlanId, validateCatalog } from "../../lib/catalog.js";
import { deriveEvents } from "../../lib/events/derive.js";
import { account, change, entryChange, types } from "../helpers/table-changes.js";
import type { AccountImage, } from "../../lib/events/model.js";
import { CHEAPEST_CALL, crossingsBetween, levelOf, lowThresholdOf } from "../../lib/events/thresholds.js";
import { PROTOTYPE_NAMES } from "../helpers/hostile-ids.js";


describe("low thresholds (lib/catalog.ts lowThreshold)", () => {
  it("is a share of the monthly allowance or an absolute amount, never below the cheapest call", () => {
    expect(lowThresholdOf("free")).toBe(2_000); // 20% of 10 000
    expect(lowThresholdOf("plus")).toBe(4_000); // 10% of 40 000
    expect(lowThresholdOf("pro")).toBe(10_000); // absolute
    const tiny = validateCatalog({ ...catalog, plans: { ...catalog.plans, free: { ...catalog.plans.free, lowThreshold: { percentOfAllowance: 0.001 } } } });
    expect(lowThresholdOf("free", tiny)).toBe(CHEAPEST_CALL);
  });

  it("refuses a threshold that is neither", () => {
    const bad = { ...catalog, plans: { ...catalog.plans, free: { ...catalog.plans.free, lowThreshold: { percentOfAllowance: 120 } } } };
    expect(() => validateCatalog(bad)).toThrow();
  });
});

describe("balance crossings", () => {
  it("fires low, depleted and recovered once per crossing", () => {
    const events = deriveEvents([
      change(account(5_000), account(2_500)), // still ok
      change(account(2_500), account(1_999)), // low
      change(account(1_999), account(1_000)), // still low: nothing
      change(account(1_000), account(0)), // depleted
      change(account(0), account(-5)), // still depleted: nothing
      change(account(-5), account(500)), // back to low only: nothing
      change(account(500), account(2_000)), // recovered (at the threshold is not below it)
      change(account(2_000), account(-1)), // low and depleted at once, in that order
    ]);
    expect(types(events)).toEqual(["credits.low", "credits.depleted", "credits.recovered", "credits.low", "credits.depleted"]);
    expect(events[0]?.data).toMatchObject({ userId: "u1", available: 1_999, threshold: 2_000, plan: "free" });
  });

  it("judges the new image on its own plan: an upgrade reports plan.changed, then any crossing of the new threshold", () => {
    const events = deriveEvents([change(account(3_000), account(3_000, { plan: "pro" }))]);
    expect(types(events)).toEqual(["plan.changed", "credits.low"]);
    expect(events[0]?.data).toMatchObject({ from: { plan: "free", interval: "month" }, to: { plan: "pro", interval: "month" } });
  });

  it("matches an independent model of threshold crossings on any walk (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.record({ available: fc.integer({ min: -50, max: 12_000 }), plan: fc.constantFrom(...PLAN_IDS) }), { minLength: 1, maxLength: 60 }), (walk) => {
        const images = walk.map(({ available, plan }, index) => account(available, { plan: plan as PlanId, seq: index }));
        const changes = images.slice(1).map((after, index) => change(images[index], after));
        const crossings = deriveEvents(changes).filter((event) => event.type.startsWith("credits."));
        // the model: compare each threshold directly, old ≥ T > new
        const expected: string[] = [];
        for (let index = 1; index < images.length; index++) {
          const before = images[index - 1] as AccountImage;
          const after = images[index] as AccountImage;
          const lowBefore = before.available < lowThresholdOf(before.plan) || before.available < 1;
          const lowAfter = after.available < lowThresholdOf(after.plan) || after.available < 1;
          if (!lowBefore && lowAfter) expected.push("credits.low");
          if (before.available >= 1 && after.available < 1) expected.push("credits.depleted");
          if (lowBefore && !lowAfter) expected.push("credits.recovered");
        }
        expect(types(crossings)).toEqual(expected);
        // low and recovered alternate (from where the walk starts): never low twice without a recovery between
        const first = images[0] as AccountImage;
        const startsOk = levelOf(first.available, first.plan) === "ok";
        const lowOrRecovered = types(crossings).filter((type) => type !== "credits.depleted");
        expect(lowOrRecovered).toEqual(lowOrRecovered.map((_, index) => ((index % 2 === 0) === startsOk ? "credits.low" : "credits.recovered")));
      }),
    );
  });

  it("levels and crossings agree for every pair of levels", () => {
    const levels = ["ok", "low", "depleted"] as const;
    for (const before of levels) for (const after of levels) if (before === after) expect(crossingsBetween(before, after)).toEqual([]);
    expect(levelOf(0, "free")).toBe("depleted");
    expect(levelOf(1, "free")).toBe("low");
  });
});

describe("entries and transitions", () => {
  it("reports grants by reason and clawbacks; settles, expiries and deductions are no event", () => {
    const events = deriveEvents([
      entryChange({ reason: "pack", amount: 50_000, seq: 7, balanceAfter: 50_100, key: "pack#cs_1" }),
      entryChange({ reason: "upgrade", amount: 100, seq: 8 }),
      entryChange({ reason: "refund", amount: -300, seq: 9 }),
      entryChange({ reason: "settle", amount: -30, seq: 10 }),
      entryChange({ reason: "expire", amount: -30, seq: 11 }),
      entryChange({ reason: "admin", amount: -30, seq: 12 }),
      entryChange({ reason: "signup", amount: 10_000, seq: 1 }),
    ]);
    expect(events.map((event) => [event.type, "reason" in event.data ? event.data.reason : undefined])).toEqual([
      ["credits.granted", "pack"],
      ["credits.granted", "top_up"],
      ["credits.clawed_back", "refund"],
    ]);
    expect(events[0]?.data).toMatchObject({ amount: 50_000, seq: 7, balanceAfter: 50_100, entryKey: "pack#cs_1" });
    expect(events[2]?.data).toMatchObject({ amount: 300 });
  });

  it("reports a payment failure and a cancellation once each", () => {
    const subscription = { id: "sub_1", status: "active", priceId: "price_x", periodStart: 0, periodEnd: 1, cancelAtPeriodEnd: false, lastEventAt: 1 };
    const failed = account(5_000, { subscription: { ...subscription, status: "past_due" }, paymentFailedAt: 1_700_000_000_000 });
    const canceled = { ...failed, subscription: { ...subscription, status: "canceled" } };
    const events = deriveEvents([
      change(account(5_000, { subscription }), failed),
      change(failed, { ...failed, balance: 4_000 }), // still failed: nothing new
      change(failed, canceled),
      change(canceled, { ...canceled, available: 4_999 }), // still canceled: nothing
    ]);
    expect(types(events)).toEqual(["subscription.payment_failed", "subscription.canceled"]);
    expect(events[0]?.data).toMatchObject({ subscriptionId: "sub_1", failedAt: "2023-11-14T22:13:20.000Z" });
  });
});

describe("ids", () => {
  it("a redelivered batch yields the same events, ids included; distinct facts get distinct ids", () => {
    const batch = [change(account(2_500), account(1_000)), entryChange({ reason: "pack", amount: 10, seq: 3 }), change(account(1_000), account(-1))];
    const first = deriveEvents(batch);
    expect(deriveEvents(structuredClone(batch))).toEqual(first);
    expect(new Set(first.map((event) => event.id)).size).toBe(first.length);
    // the same entry seen again (another record of the same fact) keeps its id
    expect(deriveEvents([entryChange({ reason: "pack", amount: 10, seq: 3 })])[0]?.id).toBe(first[1]?.id);
    for (const event of first) expect(event.id).toMatch(/^evt_[0-9a-f]{32}$/);
  });

  it("hostile user ids are plain data: events carry them, nothing keys an object by them", () => {
    for (const userId of PROTOTYPE_NAMES) {
      const events = deriveEvents([change(account(3_000, { userId }), account(0, { userId })), entryChange({ userId, reason: "admin", amount: 5, seq: 2 })]);
      expect(events.map((event) => event.data.userId)).toEqual([userId, userId, userId]);
      expect(Object.getPrototypeOf({})).toBe(Object.prototype);
    }
    const ids = PROTOTYPE_NAMES.map((userId) => deriveEvents([entryChange({ userId, reason: "admin", amount: 5, seq: 2 })])[0]?.id);
    expect(new Set(ids).size).toBe(PROTOTYPE_NAMES.length);
  });
});
