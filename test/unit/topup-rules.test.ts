import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type AutoTopUpState, STALE_IN_FLIGHT_MS, TOP_UP_FAILURE_LIMIT } from "../../lib/topup/model.js";
import { topUpJobsOf } from "../../lib/topup/jobs.js";
import { accountMirror, afterCharge, afterPaid, begin, decideStart, isLaterCrossing, monthOf, noPaymentMethod, startedIn, limitReached, withSettings } from "../../lib/topup/rules.js";

const NOW = Date.UTC(2026, 11, 3, 12);
const SETTINGS = { enabled: true, threshold: 5_000, pack: "starter" as const, monthlyLimit: 3 };
const CHARGE = { pack: "starter" as const, price: "price_pack_starter", customer: "cus_1", paymentMethod: "pm_1", credits: 50_000 };
const on = (): AutoTopUpState => withSettings(undefined, SETTINGS, NOW);

describe("decideStart: whether a crossing starts a top-up", () => {
  it("starts for a new crossing below the threshold, and names every refusal", () => {
    expect(decideStart(on(), { userId: "u", crossing: "10" }, 4_999, NOW)).toEqual({ kind: "start" });
    expect(decideStart(undefined, { userId: "u", crossing: "10" }, 0, NOW)).toEqual({ kind: "refuse", reason: "disabled" });
    expect(decideStart(withSettings(on(), { ...SETTINGS, enabled: false }, NOW), { userId: "u", crossing: "10" }, 0, NOW)).toEqual({ kind: "refuse", reason: "disabled" });
    expect(decideStart(on(), { userId: "u", crossing: "10" }, 5_000, NOW)).toEqual({ kind: "refuse", reason: "notBelowThreshold" });
    const used = limitReached(on(), "10", NOW);
    expect(limitReached(used, "10", NOW + 1)).toBe(used); // nothing new: the same state, so nothing is written
    expect(decideStart(used, { userId: "u", crossing: "10" }, 0, NOW)).toEqual({ kind: "refuse", reason: "seenCrossing" });
    expect(decideStart(used, { userId: "u", crossing: "9" }, 0, NOW)).toEqual({ kind: "refuse", reason: "seenCrossing" });
    const busy = begin(on(), { userId: "u", crossing: "10" }, CHARGE, NOW);
    expect(decideStart(busy, { userId: "u", crossing: "11" }, 0, NOW + 1_000)).toEqual({ kind: "refuse", reason: "inFlight" });
    const full = { ...on(), month: monthOf(NOW), startedThisMonth: 3 };
    expect(decideStart(full, { userId: "u", crossing: "10" }, 0, NOW)).toEqual({ kind: "refuse", reason: "monthlyLimit" });
  });

  it("resumes its own top-up (a redelivered job) and one left in flight too long, never another's fresh one", () => {
    const busy = begin(on(), { userId: "u", crossing: "10" }, CHARGE, NOW);
    expect(decideStart(busy, { userId: "u", crossing: "10" }, 0, NOW + 1)).toMatchObject({ kind: "resume", inFlight: { seq: 1 } });
    expect(decideStart(busy, { userId: "u", crossing: "12" }, 0, NOW + STALE_IN_FLIGHT_MS)).toMatchObject({ kind: "resume", inFlight: { seq: 1, crossing: "10" } });
  });

  it("a top-up in flight is carried to its end after the user turned auto top-up off (else it would stay in flight, its invoice open)", () => {
    const busy = begin(on(), { userId: "u", crossing: "10" }, CHARGE, NOW);
    const off = withSettings(busy, { ...SETTINGS, enabled: false }, NOW + 1);
    expect(decideStart(off, { userId: "u", crossing: "10" }, 0, NOW + 2)).toMatchObject({ kind: "resume", inFlight: { seq: 1 } });
    expect(decideStart(off, { userId: "u", crossing: "11" }, 0, NOW + 2)).toEqual({ kind: "refuse", reason: "disabled" });
  });

  it("a new month starts the count again", () => {
    const full = { ...on(), month: monthOf(NOW), startedThisMonth: 3 };
    const nextMonth = Date.UTC(2027, 0, 1);
    expect(startedIn(full, nextMonth)).toBe(0);
    expect(decideStart(full, { userId: "u", crossing: "10" }, 0, nextMonth)).toEqual({ kind: "start" });
  });

  it("stream positions compare as integers of any length", () => {
    expect(isLaterCrossing("100000000000000000000000000002", "99999999999999999999999999999")).toBe(true);
    expect(isLaterCrossing("9", "10")).toBe(false);
    expect(isLaterCrossing("1", undefined)).toBe(true);
  });
});

describe("what an outcome does", () => {
  it(`a failure counts; ${TOP_UP_FAILURE_LIMIT} in a row turn it off; a success resets; turning it on again clears them`, () => {
    let state = on();
    for (let attempt = 1; attempt <= TOP_UP_FAILURE_LIMIT; attempt++) {
      state = begin(state, { userId: "u", crossing: String(attempt) }, CHARGE, NOW);
      state = afterCharge(state, state.seq, { outcome: "declined", invoiceId: `in_${attempt}` }, NOW);
      expect(state.failuresInARow).toBe(attempt);
      expect(state.settings.enabled).toBe(attempt < TOP_UP_FAILURE_LIMIT);
    }
    expect(state.disabledReason).toBe("failures");
    expect(accountMirror(state).below).toBeUndefined();
    const again = withSettings(state, SETTINGS, NOW);
    expect(again).toMatchObject({ failuresInARow: 0, settings: { enabled: true } });
    expect(again.disabledReason).toBeUndefined();
  });

  it("declined gives back its place in the month; action required keeps it (the customer may still pay)", () => {
    const started = begin(on(), { userId: "u", crossing: "1" }, CHARGE, NOW);
    expect(started.startedThisMonth).toBe(1);
    expect(afterCharge(started, 1, { outcome: "declined", invoiceId: "in_1" }, NOW).startedThisMonth).toBe(0);
    expect(afterCharge(started, 1, { outcome: "action_required", invoiceId: "in_1", actionUrl: "https://pay" }, NOW)).toMatchObject({
      startedThisMonth: 1,
      failuresInARow: 1,
      lastAttempt: { outcome: "action_required", actionUrl: "https://pay" },
    });
  });

  it("a refusal to make an invoice ends a top-up without one, and changes nothing once another delivery recorded one", () => {
    const started = begin(on(), { userId: "u", crossing: "1" }, CHARGE, NOW);
    expect(afterCharge(started, 1, { outcome: "declined" }, NOW)).toMatchObject({ startedThisMonth: 0, failuresInARow: 1, lastAttempt: { seq: 1, outcome: "declined" } });
    const recorded = { ...started, inFlight: { ...(started.inFlight as NonNullable<typeof started.inFlight>), invoiceId: "in_1" } };
    expect(afterCharge(recorded, 1, { outcome: "declined" }, NOW)).toBe(recorded);
    expect(afterCharge(recorded, 1, { outcome: "succeeded", invoiceId: "in_1" }, NOW)).toMatchObject({ startedThisMonth: 1, lastAttempt: { outcome: "succeeded", invoiceId: "in_1" } });
  });

  it("an outcome for a top-up no longer in flight changes nothing; invoice.paid ends one still in flight", () => {
    const started = begin(on(), { userId: "u", crossing: "1" }, CHARGE, NOW);
    const done = afterCharge(started, 1, { outcome: "succeeded", invoiceId: "in_1" }, NOW);
    expect(afterCharge(done, 1, { outcome: "declined", invoiceId: "in_1" }, NOW)).toBe(done);
    expect(afterPaid(started, 1, "in_1", NOW)).toMatchObject({ lastAttempt: { outcome: "succeeded", invoiceId: "in_1" } });
    // a paid top-up's credits count as there until invoice.paid brings them
    expect(done.awaiting).toEqual({ seq: 1, credits: 50_000 });
    expect(decideStart(done, { userId: "u", crossing: "2" }, 4_000, NOW)).toEqual({ kind: "refuse", reason: "notBelowThreshold" });
    const credited = afterPaid(done, 1, "in_1", NOW);
    expect(credited.awaiting).toBeUndefined();
    expect(credited.lastAttempt).toEqual(done.lastAttempt);
    expect(decideStart(credited, { userId: "u", crossing: "2" }, 4_000, NOW)).toEqual({ kind: "start" });
  });

  it("at most monthlyLimit + the failure limit attempts a month, declined ones included, whatever turning it on again clears", () => {
    let state = withSettings(undefined, { ...SETTINGS, monthlyLimit: 1 }, NOW);
    let crossing = 0;
    let attempts = 0;
    for (let round = 0; round < 10; round++) {
      const decision = decideStart(state, { userId: "u", crossing: String(++crossing) }, 0, NOW);
      if (decision.kind === "start") {
        attempts += 1;
        state = begin(state, { userId: "u", crossing: String(crossing) }, CHARGE, NOW);
        state = afterCharge(state, state.seq, { outcome: "declined", invoiceId: `in_${crossing}` }, NOW);
      }
      state = withSettings(state, { ...SETTINGS, monthlyLimit: 1 }, NOW); // on again, failures cleared
    }
    expect(attempts).toBe(1 + TOP_UP_FAILURE_LIMIT);
  });

  it("a payment still processing (pending) is no failure and keeps its place in the month; invoice.paid makes it a success", () => {
    const started = begin(on(), { userId: "u", crossing: "1" }, CHARGE, NOW);
    const pending = afterCharge(started, 1, { outcome: "pending", invoiceId: "in_1" }, NOW);
    expect(pending).toMatchObject({ failuresInARow: 0, startedThisMonth: 1, lastAttempt: { outcome: "pending" } });
    expect(pending.inFlight).toBeUndefined();
    expect(afterPaid(pending, 1, "in_1", NOW)).toMatchObject({ lastAttempt: { outcome: "succeeded" } });
  });

  it("no saved card: a failure that starts nothing and counts nothing in the month", () => {
    const failed = noPaymentMethod(on(), { userId: "u", crossing: "1" }, NOW);
    expect(failed).toMatchObject({ seq: 1, failuresInARow: 1, startedThisMonth: 0, lastCrossing: "1", lastAttempt: { outcome: "no_payment_method" } });
    expect(failed.inFlight).toBeUndefined();
  });
});

describe("properties over any sequence of crossings and outcomes", () => {
  type Step = { kind: "crossing"; available: number; outcome: "succeeded" | "declined" | "action_required" | "none" | "card" } | { kind: "settings"; enabled: boolean; monthlyLimit: number } | { kind: "days"; days: number } | { kind: "redeliver" };
  const step: fc.Arbitrary<Step> = fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant("crossing" as const), available: fc.integer({ min: 0, max: 9_000 }), outcome: fc.constantFrom("succeeded", "declined", "action_required", "none", "card") }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("settings" as const), enabled: fc.boolean(), monthlyLimit: fc.integer({ min: 1, max: 4 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("days" as const), days: fc.integer({ min: 1, max: 20 }) }) },
    { weight: 1, arbitrary: fc.constant({ kind: "redeliver" as const }) },
  );

  it("never more started in a month than its limit, never two in flight, never a start while off, each crossing used once", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        let now = NOW;
        let state: AutoTopUpState = on();
        let position = 100;
        let lastJob: string | undefined;
        const startedCrossings = new Set<string>();
        for (const current of steps) {
          if (current.kind === "days") now += current.days * 86_400_000;
          else if (current.kind === "settings") state = withSettings(state, { ...state.settings, enabled: current.enabled, monthlyLimit: current.monthlyLimit }, now);
          else {
            const crossing = current.kind === "redeliver" ? lastJob : String(++position);
            if (crossing === undefined) continue;
            lastJob = crossing;
            const available = current.kind === "crossing" ? current.available : 0;
            const decision = decideStart(state, { userId: "u", crossing }, available, now);
            if (decision.kind === "refuse") {
              if (decision.reason === "monthlyLimit") state = limitReached(state, crossing, now);
              continue;
            }
            if (decision.kind === "start") {
              expect(state.settings.enabled).toBe(true);
              expect(state.inFlight).toBeUndefined();
              expect(startedCrossings.has(crossing)).toBe(false);
              if (current.kind === "crossing" && current.outcome === "card") {
                state = noPaymentMethod(state, { userId: "u", crossing }, now);
                continue;
              }
              startedCrossings.add(crossing);
              const limit = state.settings.monthlyLimit;
              state = begin(state, { userId: "u", crossing }, CHARGE, now);
              expect(state.startedThisMonth).toBeLessThanOrEqual(limit);
            }
            const outcome = current.kind === "crossing" ? current.outcome : "succeeded";
            if (outcome === "none" || outcome === "card") continue; // left in flight (a crash): the next job finds it
            const seq = state.inFlight?.seq;
            if (seq !== undefined) state = afterCharge(state, seq, { outcome, invoiceId: `in_${seq}` }, now);
          }
          if (state.failuresInARow >= TOP_UP_FAILURE_LIMIT) expect(state.settings.enabled).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("topUpJobsOf: crossings from the change stream", () => {
  const account = (available: number, autoTopUpBelow?: number) => ({ userId: "u", plan: "free" as const, interval: "month" as const, balance: available, available, seq: 1, ...(autoTopUpBelow !== undefined ? { autoTopUpBelow } : {}) });
  const change = (position: string, before: ReturnType<typeof account> | undefined, after: ReturnType<typeof account>) => ({ kind: "account" as const, position, at: 0, ...(before ? { before } : {}), after });

  it("a fall from at or above the threshold to below is a crossing; staying below is not", () => {
    expect(topUpJobsOf([change("1", account(5_000, 5_000), account(4_999, 5_000))])).toEqual([{ userId: "u", crossing: "1" }]);
    expect(topUpJobsOf([change("2", account(4_000, 5_000), account(3_000, 5_000))])).toEqual([]);
    expect(topUpJobsOf([change("3", account(6_000, 5_000), account(5_000, 5_000))])).toEqual([]);
    expect(topUpJobsOf([change("4", account(6_000), account(1_000))])).toEqual([]);
  });

  it("turning it on (or moving the threshold) while below is a crossing", () => {
    expect(topUpJobsOf([change("5", account(1_000), account(1_000, 5_000))])).toEqual([{ userId: "u", crossing: "5" }]);
    expect(topUpJobsOf([change("6", account(1_000, 500), account(1_000, 5_000))])).toEqual([{ userId: "u", crossing: "6" }]);
  });

  it("any sequence of balances: exactly one crossing per fall below (fast-check)", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 10_000 }), { minLength: 1, maxLength: 40 }), (balances) => {
        const changes = balances.slice(1).map((available, index) => change(String(index + 1), account(balances[index] as number, 5_000), account(available, 5_000)));
        const falls = balances.slice(1).filter((available, index) => (balances[index] as number) >= 5_000 && available < 5_000).length;
        expect(topUpJobsOf(changes)).toHaveLength(falls);
      }),
    );
  });
});
