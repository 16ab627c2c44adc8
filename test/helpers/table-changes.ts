import type { LedgerEntry } from "../../lib/ledger/account.js";
import type { AccountImage, TableChange, WebhookEvent } from "../../lib/events/model.js";

/**
 * Table changes as the stream consumer reads them (lib/events/model.ts), for the pure derivation
 * tests: account images and ledger entries of user `u1`, each change at the next stream position.
 */
export const account = (available: number, overrides: Partial<AccountImage> = {}): AccountImage => ({
  userId: "u1",
  plan: "free",
  interval: "month",
  balance: available,
  available,
  seq: 1,
  ...overrides,
});

let position = 1000n;

export const change = (before: AccountImage | undefined, after: AccountImage): TableChange => {
  position += 1n;
  return { kind: "account", position: String(position), at: 1_700_000_000_000, ...(before ? { before } : {}), after };
};

export const entryChange = (entry: Partial<LedgerEntry>): TableChange => {
  position += 1n;
  return {
    kind: "entry",
    position: String(position),
    at: 1_700_000_000_000,
    entry: { userId: "u1", key: "k", amount: 0, balanceAfter: 0, seq: 1, reason: "settle", bucket: "allowance", refs: {}, createdAt: 0, ...entry },
  };
};

export const types = (events: WebhookEvent[]) => events.map((event) => event.type);
