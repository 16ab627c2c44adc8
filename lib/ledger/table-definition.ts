/**
 * The single-table layout, as plain data. The CDK stack and the test/local table helper both
 * build their table from this object, so keys and indexes have exactly one source of truth.
 *
 * Items (pk = `U#<userId>` unless noted):
 * - `ACCOUNT`            the account: balance, available, holds map, allowance split, periods.
 * - `E#<key>`            one ledger entry per business fact; the sort key IS the idempotency key.
 * - `H#<requestId>#<tag>` the outcome of a hold that was released (settles are ledger entries).
 *
 * Indexes:
 * - `history` (LSI, sort `entrySeq`): ledger entries in the exact order they were applied.
 *   An LSI (not a GSI) because history reads must be strongly consistent with the balance.
 * - `grantDue` (sparse GSI): only accounts whose allowance is granted by schedule (free, annual)
 *   carry `grantShard`; sorted by `nextGrantAt`, so the sweep reads just the due range.
 * - `holdDue` (sparse GSI): only accounts with open holds carry `holdShard`; sorted by the
 *   earliest hold expiry, so expiring abandoned holds reads only accounts that have one.
 */
export const TABLE_KEYS = {
  partitionKey: "pk",
  sortKey: "sk",
  ttlAttribute: "ttl",
} as const;

/** The partition of a user's items (account, entries, release markers): `U#<userId>`. */
export const userPk = (userId: string): string => `U#${userId}`;

/** The user whose partition `pk` is (the inverse of `userPk`). */
export const userIdOfPk = (pk: string): string => pk.slice(userPk("").length);

/** The account item's sort key. */
export const ACCOUNT_SK = "ACCOUNT";

/** The account item's key, plain (`marshall` it for a request): the ledger, billing and the sweep address the one item. */
export const accountKey = (userId: string): { pk: string; sk: string } => ({ pk: userPk(userId), sk: ACCOUNT_SK });

export const INDEXES = {
  history: { name: "history", sortKey: "entrySeq" },
  grantDue: { name: "grantDue", partitionKey: "grantShard", sortKey: "nextGrantAt" },
  holdDue: { name: "holdDue", partitionKey: "holdShard", sortKey: "holdDueAt" },
} as const;

/** Shards spread the schedule indexes over several partitions; the sweep queries each. */
export const SCHEDULE_SHARDS = 8;

export type AttributeKind = "S" | "N";

export interface TableDefinition {
  /** the change stream's view: old and new images, so a consumer judges each transition on its own (lib/events) */
  streamViewType: "NEW_AND_OLD_IMAGES";
  partitionKey: { name: string; type: AttributeKind };
  sortKey: { name: string; type: AttributeKind };
  ttlAttribute: string;
  localIndexes: { name: string; sortKey: { name: string; type: AttributeKind } }[];
  globalIndexes: {
    name: string;
    partitionKey: { name: string; type: AttributeKind };
    sortKey: { name: string; type: AttributeKind };
  }[];
}

export const tableDefinition: TableDefinition = {
  streamViewType: "NEW_AND_OLD_IMAGES",
  partitionKey: { name: TABLE_KEYS.partitionKey, type: "S" },
  sortKey: { name: TABLE_KEYS.sortKey, type: "S" },
  ttlAttribute: TABLE_KEYS.ttlAttribute,
  localIndexes: [{ name: INDEXES.history.name, sortKey: { name: INDEXES.history.sortKey, type: "N" } }],
  globalIndexes: [
    {
      name: INDEXES.grantDue.name,
      partitionKey: { name: INDEXES.grantDue.partitionKey, type: "S" },
      sortKey: { name: INDEXES.grantDue.sortKey, type: "N" },
    },
    {
      name: INDEXES.holdDue.name,
      partitionKey: { name: INDEXES.holdDue.partitionKey, type: "S" },
      sortKey: { name: INDEXES.holdDue.sortKey, type: "N" },
    },
  ],
};
