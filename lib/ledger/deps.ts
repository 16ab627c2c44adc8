import type { Catalog } from "../catalog.js";
import type { LedgerStore } from "./store.js";

/** What every ledger use case needs; built once per process (see lib/ledger/index). */
export interface LedgerDeps {
  store: LedgerStore;
  /** epoch ms; injected so tests can walk through periods */
  now: () => number;
  holdTtlMs: number;
  maxOpenHolds: number;
  /** per user per minute on authorize; 0 = off */
  authorizeRateLimitPerMinute: number;
  /** the product catalog (lib/catalog); injectable so a test can declare e.g. a `reset` plan */
  catalog: Catalog;
}

export const LEDGER_DEFAULTS = {
  holdTtlMs: 900_000,
  maxOpenHolds: 64,
  authorizeRateLimitPerMinute: 600,
} as const;
