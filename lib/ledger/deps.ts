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

/**
 * The ledger's defaults, said once: lib/config.ts defaults HOLD_TTL_SECONDS and
 * AUTHORIZE_RATE_LIMIT_PER_MINUTE to them, the runtime, the ops CLI and the tests read them.
 */
export const LEDGER_DEFAULTS = {
  /** 15 minutes: a hold not settled or released by then may be released by the sweep */
  holdTtlMs: 900_000,
  maxOpenHolds: 64,
  /** per user per minute on authorize (0 = off) */
  authorizeRateLimitPerMinute: 600,
} as const;
