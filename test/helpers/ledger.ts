import { type Catalog, catalog, type PlanId, planOf, validateCatalog } from "../../lib/catalog.js";
import { createDynamoLedgerStore } from "../../lib/ledger/dynamo-ledger-store.js";
import { changePlanSchedule, grantCredits, LEDGER_DEFAULTS, type LedgerDeps } from "../../lib/ledger/index.js";
import { DAY_MS } from "../../lib/periods.js";
import { countRequests, freshTable } from "./dynamo.js";
import { useFixture } from "./fixture.js";

export const START = Date.UTC(2026, 0, 1, 12, 0, 0);

/** Catalog models the tests chat with. */
export const SONNET = "anthropic/claude-sonnet-4.5";
export const OPUS = "anthropic/claude-opus-4.5";

/** A controllable clock: tests walk it through days and periods. */
export class TestClock {
  constructor(public value = START) {}
  now = () => this.value;
  advanceDays(days: number) {
    this.value += days * DAY_MS;
  }
  at(dayOffset: number) {
    this.value = START + dayOffset * DAY_MS;
  }
}

/** Ledger deps over a fresh DynamoDB Local table, with a request counter and a test clock. */
export async function ledgerFixture(overrides: Partial<LedgerDeps> = {}, table: { stream?: boolean } = {}) {
  const { client, tableName } = await freshTable("ledger", table);
  const requests = countRequests(client);
  const clock = new TestClock();
  const deps: LedgerDeps = {
    store: createDynamoLedgerStore(client, tableName),
    now: clock.now,
    holdTtlMs: LEDGER_DEFAULTS.holdTtlMs,
    maxOpenHolds: LEDGER_DEFAULTS.maxOpenHolds,
    authorizeRateLimitPerMinute: 0,
    catalog,
    ...overrides,
  };
  return { deps, client, tableName, requests, clock };
}

export type LedgerFixture = Awaited<ReturnType<typeof ledgerFixture>>;

/**
 * The ledger fixture of a test file (or describe block), made once before its tests. The clock is
 * not put back between tests: each test moves it only forward, from where the last one left it.
 */
export const useLedgerFixture = (overrides: Partial<LedgerDeps> = {}, table: { stream?: boolean } = {}): LedgerFixture =>
  useFixture("useLedgerFixture", () => ledgerFixture(overrides, table));

/** Puts a user on a paid plan, monthly from now: what a call of a large-tier model needs (docs/entitlements.md). */
export const onPaidPlan = (deps: LedgerDeps, userId: string, plan: "plus" | "pro" = "pro") =>
  changePlanSchedule(deps, { userId, plan, interval: "month", periodStart: deps.now() });

/**
 * The shipped catalog with every model tier on every plan: for storms whose subject is money under
 * concurrency and faults with every model's price, not plan entitlements (those have
 * test/integration/entitlements.test.ts and test/unit/entitlements.test.ts).
 */
export function everyModelOnEveryPlan(): Catalog {
  const changed = structuredClone(catalog) as Catalog;
  for (const plan of Object.values(changed.plans)) plan.entitlements.modelTiers = Object.keys(changed.modelTiers);
  return validateCatalog(changed);
}

let counter = 0;
export const uniqueUser = (label = "user") => `${label}-${process.pid}-${++counter}`;

/**
 * Puts a user on an annual plan the way billing does: the plan and schedule anchored at
 * `anchor`, and the annual invoice's grant (month 0) with the share of months 1..11 it pays for
 * (lib/ledger/paid-year.ts). Without the payment an annual month grants nothing.
 */
export async function payAnnualYear(
  deps: LedgerDeps,
  input: { userId: string; plan: PlanId; anchor: number; invoice?: string },
): Promise<void> {
  const monthly = planOf(input.plan, deps.catalog).monthlyAllowance;
  await changePlanSchedule(deps, { userId: input.userId, plan: input.plan, interval: "year", periodStart: input.anchor });
  await grantCredits(deps, {
    userId: input.userId,
    key: `invoice#${input.invoice ?? `in_year_${input.anchor}`}`,
    amount: monthly,
    bucket: "allowance",
    reason: "invoice",
    paidShare: { anchor: input.anchor, fromMonth: 1, monthly },
  });
}
