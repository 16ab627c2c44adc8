import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type AccountRecord, authorizeChat, type HoldRecord, type LedgerStore } from "../../lib/ledger/index.js";
import { type AdmissionRule, admissionRules, refusedRules } from "../../lib/ledger/admission.js";
import type { PlanAdmission } from "../../lib/ledger/entitlements.js";
import { emptyMap } from "../../lib/own-keys.js";
import { hostileIdArbitrary } from "../helpers/hostile-ids.js";
import { uniqueUser, useLedgerFixture } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";

const NOW = Date.UTC(2026, 5, 1, 12, 0, 30);
const MINUTE = Math.floor(NOW / 60_000);

const holdArbitrary: fc.Arbitrary<HoldRecord> = fc.record({
  reserved: fc.integer({ min: 1, max: 5_000 }),
  model: fc.constant("anthropic/claude-sonnet-4.5"),
  createdAt: fc.constant(NOW - 1_000),
  expiresAt: fc.constant(NOW + 900_000),
  tag: fc.string({ unit: fc.constantFrom("a", "b", "c"), minLength: 1, maxLength: 3 }),
});

const PLANS = ["free", "plus", "pro"] as const;
/** The account's plan: a catalog plan, or a name no plan has (a lookalike, a prototype name). */
const accountPlanArbitrary = fc.oneof(fc.constantFrom(...PLANS), fc.constantFrom(...PLANS), fc.constantFrom("Pro", "pro ", "__proto__", "constructor", "free\u0000"));

/** Random account states around every admission boundary. */
const stateArbitrary = fc.record({
  balance: fc.integer({ min: -1_000, max: 20_000 }),
  heldExtra: fc.integer({ min: 0, max: 3_000 }),
  holds: fc.dictionary(fc.oneof(hostileIdArbitrary(), fc.constant("existing")), holdArbitrary, { maxKeys: 5 }),
  nextGrantAt: fc.option(fc.constantFrom(NOW - 60_000, NOW - 1, NOW, NOW + 1, NOW + 86_400_000), { nil: undefined }),
  counter: fc.option(fc.integer({ min: 0, max: 6 }), { nil: undefined }),
  plan: accountPlanArbitrary,
});

/** Requests placed on the state's boundaries as often as not: reserved vs available, counter vs limit, holds vs cap. */
const boundaryOffset = fc.oneof(fc.integer({ min: -1, max: 1 }), fc.integer({ min: -5_000, max: 5_000 }));
/** One plan's terms for the call: whether it includes the model and allows the reservation, its cap and limit around the state's. */
const planTermsArbitrary = fc.record({
  includes: fc.boolean(),
  allows: fc.boolean(),
  holdCapOffset: boundaryOffset,
  limitOffset: boundaryOffset,
});
const requestArbitrary = fc.record({
  requestId: fc.oneof(hostileIdArbitrary(), fc.constant("existing")),
  reservedOffset: boundaryOffset,
  /** terms for each catalog plan (random plans × models × limits) */
  terms: fc.tuple(planTermsArbitrary, planTermsArbitrary, planTermsArbitrary),
  rateLimited: fc.boolean(),
});

/** Plans grouped by equal limit, as lib/ledger/entitlements.ts groups them (one group, or several). */
function byLimit(limits: [string, number][]): { plans: string[]; limit: number }[] {
  const groups = new Map<number, string[]>();
  for (const [plan, limit] of limits) groups.set(limit, [...(groups.get(limit) ?? []), plan]);
  return [...groups].map(([limit, plans]) => ({ plans, limit }));
}

type State = typeof stateArbitrary extends fc.Arbitrary<infer T> ? T : never;

function accountOf(userId: string, state: State): AccountRecord {
  const holds = emptyMap<HoldRecord>();
  const holdSeq = emptyMap<number>();
  const holdBalance = emptyMap<number>();
  for (const [requestId, hold] of Object.entries(state.holds)) {
    holds[requestId] = hold;
    holdSeq[requestId] = 1;
    holdBalance[requestId] = state.balance;
  }
  const held = Object.values(state.holds).reduce((sum, hold) => sum + hold.reserved, 0);
  const rateCounters = emptyMap<number>();
  if (state.counter !== undefined) rateCounters[String(MINUTE)] = state.counter;
  return {
    userId,
    plan: state.plan as AccountRecord["plan"],
    interval: "month",
    createdAt: NOW - 86_400_000,
    balance: state.balance,
    available: state.balance - held - state.heldExtra,
    seq: 1,
    allowanceBase: state.balance,
    purchasedBase: 0,
    spent: 0,
    holds,
    holdSeq,
    holdBalance,
    outbox: emptyMap(),
    outboxSeq: emptyMap(),
    outboxBalance: emptyMap(),
    periodIndex: 0,
    periodAnchor: NOW - 86_400_000,
    ...(state.nextGrantAt === undefined ? {} : { nextGrantAt: state.nextGrantAt, grantShard: "G0" }),
    rateCounters,
  };
}

/** DynamoDB's own verdict: the real reserve of a fresh copy of the state, conditioned on `rules` alone. */
async function dynamoAdmits(store: LedgerStore, account: AccountRecord | undefined, requestId: string, reserved: number, rules: AdmissionRule[]) {
  const userId = account?.userId ?? uniqueUser("absent");
  if (account) expect(await store.createAccount(account, [])).toBe(true);
  const outcome = await store.reserve({
    userId,
    requestId,
    hold: { reserved, model: "anthropic/claude-sonnet-4.5", createdAt: NOW, expiresAt: NOW + 900_000, tag: "new" },
    holdShard: "G0",
    rules,
    rateCounterMinute: MINUTE,
  });
  return outcome;
}

const logs = captureLogs();

describe("admission: the write's condition and the refusal's diagnosis are the same named rules", () => {
  const fx = useLedgerFixture();

  it("for random account states, DynamoDB's verdict on each rule and on all of them equals the rules evaluated (fast-check)", async () => {
    await fc.assert(
      fc.asyncProperty(stateArbitrary, requestArbitrary, fc.boolean(), async (state, offsets, absent) => {
        const available = accountOf("probe", state).available;
        const request = { requestId: offsets.requestId, reserved: Math.max(1, available + offsets.reservedOffset) };
        const terms = offsets.terms.map((term, i) => ({ plan: PLANS[i] as string, ...term }));
        // a plan list is never empty (DynamoDB's IN needs a value): "none" is a plan no account has
        const orNone = (plans: string[]) => (plans.length ? plans : ["none"]);
        const plans: PlanAdmission = {
          catalogPlans: [...PLANS],
          includingModel: orNone(terms.filter((term) => term.includes).map((term) => term.plan)),
          allowingReservation: orNone(terms.filter((term) => term.allows).map((term) => term.plan)),
          holdCaps: byLimit(terms.map((term) => [term.plan, Math.max(1, Object.keys(state.holds).length + term.holdCapOffset)])),
          ...(offsets.rateLimited ? { rateLimits: byLimit(terms.map((term) => [term.plan, Math.max(1, (state.counter ?? 0) + term.limitOffset)])) } : {}),
        };
        const rules = admissionRules({ requestId: request.requestId, reserved: request.reserved, now: NOW, minute: MINUTE, plans });
        const fresh = () => (absent ? undefined : accountOf(uniqueUser("rules"), state));
        const [accountExists, ...others] = rules as [AdmissionRule, ...AdmissionRule[]];
        // each rule alone (with the account's existence: without it the update has no item to change)
        for (const rule of others) {
          const account = fresh();
          const outcome = await dynamoAdmits(fx.deps.store, account, request.requestId, request.reserved, [accountExists, rule]);
          const refused = refusedRules([accountExists, rule], account);
          expect({ rule: rule.name, admitted: outcome.kind === "reserved" }).toEqual({ rule: rule.name, admitted: refused.length === 0 });
        }
        const account = fresh();
        const outcome = await dynamoAdmits(fx.deps.store, account, request.requestId, request.reserved, rules);
        expect(outcome.kind === "reserved").toBe(refusedRules(rules, account).length === 0);
        // the refused write returns the item the diagnosis evaluates: it names the same rules
        if (outcome.kind === "rejected") expect(refusedRules(rules, outcome.account)).toEqual(refusedRules(rules, account));
      }),
      { numRuns: 60 },
    );
  });

  // Regression (red team): when the store refused for a reason the diagnosis did not know, authorize
  // retried ~40 times and answered a misleading 409 "busy".
  it("a refusal no rule explains is an ERROR with the rule set, not a silent retry", async () => {
    const userId = uniqueUser("unexplained");
    // A store that enforces one condition more than the rules it is given: the drift this guards against.
    const drifted: LedgerStore = {
      ...fx.deps.store,
      reserve: (request) =>
        fx.deps.store.reserve({
          ...request,
          rules: [...request.rules, { name: "affordable", condition: { kind: "compare", path: ["available"], operator: ">=", value: 1e12 } }],
        }),
    };
    const deps = { ...fx.deps, store: drifted };
    await authorizeChat(fx.deps, { userId, requestId: "seed", model: "anthropic/claude-sonnet-4.5", inputTokens: 1, maxOutputTokens: 1 }).catch(
      () => undefined,
    );
    fx.requests.reset();
    await expect(
      authorizeChat(deps, { userId, requestId: "drift", model: "anthropic/claude-sonnet-4.5", inputTokens: 10, maxOutputTokens: 10 }),
    ).rejects.toThrow(/no admission rule explains/);
    expect(fx.requests.total()).toBe(1); // the one refused write: no retry loop
    const errors = logs.lines().filter((line) => line.level === "ERROR");
    expect(errors).toContainEqual(
      expect.objectContaining({
        message: "authorize refused by a condition no admission rule explains",
        rules: ["accountExists", "hasNoSuchHold", "noGrantDue", "planIncludesModel", "planAllowsReservation", "underHoldCap", "affordable"],
      }),
    );
  });
});
