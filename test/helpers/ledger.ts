import { catalog } from "../../lib/catalog.js";
import { LEDGER_DEFAULTS, type LedgerDeps, createDynamoLedgerStore } from "../../lib/ledger/index.js";
import { DAY_MS } from "../../lib/periods.js";
import { countRequests, freshTable } from "./dynamo.js";

export const START = Date.UTC(2026, 0, 1, 12, 0, 0);

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
export async function ledgerFixture(overrides: Partial<LedgerDeps> = {}) {
  const { client, tableName } = await freshTable("ledger");
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

let counter = 0;
export const uniqueUser = (label = "user") => `${label}-${process.pid}-${++counter}`;
