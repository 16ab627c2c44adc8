import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import { marshall } from "@aws-sdk/util-dynamodb";
import { readItem, storedMapKey } from "../dynamo/items.js";
import { emptyMap, ownValue } from "../own-keys.js";
import type { AccountRecord, HoldRecord, LedgerEntry } from "./account.js";
import type { AttributePath } from "./admission.js";
import type { ExpressionParts } from "./dynamo-expression.js";
import { accountKey, userPk } from "./table-definition.js";

/**
 * The ledger's items as stored ↔ the ledger's model (lib/ledger/account.ts), in this one place:
 * the item conversions, and the stored name of every account attribute the adapters' update and
 * condition expressions name (dynamo-ledger-store.ts, dynamo-conditions.ts, the sweep's
 * dynamo-schedule-store.ts). Nothing outside the adapters ever sees a stored name.
 *
 * The model reads full names; the stored account item keeps short ones for its holds and its
 * per-request maps (`holds.<id>.a`, `holdBal`, `pend`, `pendSeq`, `pendBal`, `rl`) on purpose:
 * every authorize and settle writes the account item, and a write's capacity units grow with the
 * item's size, names included. The stored names are a format (every item already in a table has
 * them, test/unit/dynamo-item.test.ts pins them): renaming one is a data migration, not a refactor.
 */

/** Account fields stored under another name than the model's; every other field is stored under its own. */
const ACCOUNT_STORED_NAMES: Readonly<Partial<Record<keyof AccountRecord, string>>> = {
  holdBalance: "holdBal",
  outbox: "pend",
  outboxSeq: "pendSeq",
  outboxBalance: "pendBal",
  rateCounters: "rl",
};

/** A hold's fields (`holds.<requestId>.<field>`) as stored. */
const HOLD_STORED_NAMES = {
  reserved: "a",
  model: "m",
  createdAt: "c",
  tag: "t",
  expiresAt: "e",
} as const satisfies Record<keyof HoldRecord, string>;

/** A ledger entry's fields stored under another name (`entrySeq`: the history index's sort key). */
const ENTRY_STORED_NAMES: Readonly<Partial<Record<keyof LedgerEntry, string>>> = { seq: "entrySeq" };

const inverse = (names: Readonly<Record<string, string | undefined>>): Record<string, string> =>
  Object.fromEntries(Object.entries(names).map(([domain, stored]) => [stored, domain]));
const ACCOUNT_DOMAIN_NAMES = inverse(ACCOUNT_STORED_NAMES);
const HOLD_DOMAIN_NAMES = inverse(HOLD_STORED_NAMES);
const ENTRY_DOMAIN_NAMES = inverse(ENTRY_STORED_NAMES);

/**
 * A record with its field names looked up in `names` (a name it lacks stays as it is). The lookup
 * reads own keys only (`constructor` is no entry of any table), and the fields are defined, never
 * assigned: no name ever reaches a prototype.
 */
function renamed(record: Readonly<Record<string, unknown>>, names: Readonly<Record<string, string | undefined>>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(record).map(([name, value]) => [ownValue(names, name) ?? name, value]));
}

/** A map keyed by requestIds with each value converted; a null-prototype map, so a key `__proto__` stays an own key. */
function mapValues<T, U>(map: Readonly<Record<string, T>>, convert: (value: T) => U): Record<string, U> {
  const converted = emptyMap<U>();
  for (const [key, value] of Object.entries(map)) converted[key] = convert(value);
  return converted;
}

/** The stored name of an account field. */
export const storedAccountName = (field: keyof AccountRecord): string => ownValue(ACCOUNT_STORED_NAMES as Record<string, string>, field) ?? field;

/**
 * A path of the model (an admission rule's, or the adapter's own) in stored names: the account
 * field, then a key in it (encoded when chosen outside: `storedMapKey`), then a hold's field.
 */
export function storedPath([field, ...inside]: AttributePath): string[] {
  return [
    storedAccountName(field),
    ...inside.map((step, depth) => {
      if (typeof step !== "string") return storedMapKey(step.key);
      return field === "holds" && depth === 1 ? (ownValue<string>(HOLD_STORED_NAMES, step) ?? step) : step;
    }),
  ];
}

/** `path` (model names) as the placeholders of an expression, in stored names. */
export const accountPath = (parts: ExpressionParts, ...path: AttributePath): string => parts.path(...storedPath(path));

/** A hold as stored: the value a reserve writes at `holds.<requestId>`. */
export const holdItem = (hold: HoldRecord): Record<string, unknown> => renamed({ ...hold }, HOLD_STORED_NAMES);

/** A stored hold in the model's names; null-prototype like every map read (`readItem`). */
const holdFromStored = (stored: Record<string, unknown>): HoldRecord =>
  Object.assign(emptyMap<unknown>(), renamed(stored, HOLD_DOMAIN_NAMES)) as unknown as HoldRecord;

/** The account as stored: stored names, the maps keyed by requestId with their keys encoded (`storedMapKey`). */
export function accountItem(account: AccountRecord): Record<string, AttributeValue> {
  const encoded = <T>(map: Readonly<Record<string, T>>) =>
    Object.fromEntries(Object.entries(map).map(([requestId, value]) => [storedMapKey(requestId), value]));
  const item = renamed(
    {
      ...account,
      holds: encoded(mapValues(account.holds, holdItem)),
      holdSeq: encoded(account.holdSeq),
      holdBalance: encoded(account.holdBalance),
    },
    ACCOUNT_STORED_NAMES,
  );
  return marshall({ ...accountKey(account.userId), ...item }, { removeUndefinedValues: true });
}

/**
 * The account fields an item carries, in the model's names: a whole account item, or the part of
 * one a projection or `UPDATED_NEW` returned. Maps stay null-prototype (`readItem`).
 */
export function accountFieldsFromItem(item: Record<string, AttributeValue>): Partial<AccountRecord> {
  const { pk: _pk, sk: _sk, ...stored } = readItem(item);
  const account = renamed(stored, ACCOUNT_DOMAIN_NAMES);
  if (account.holds !== undefined) account.holds = mapValues(account.holds as Record<string, Record<string, unknown>>, holdFromStored);
  return account as Partial<AccountRecord>;
}

/** The account an item holds (undefined: no item). */
export const accountFromItem = (item: Record<string, AttributeValue> | undefined): AccountRecord | undefined =>
  item ? (accountFieldsFromItem(item) as AccountRecord) : undefined;

export const ENTRY_PREFIX = "E#";

export function entryItem(entry: LedgerEntry): Record<string, AttributeValue> {
  return marshall({ pk: userPk(entry.userId), sk: `${ENTRY_PREFIX}${entry.key}`, ...renamed({ ...entry }, ENTRY_STORED_NAMES) });
}

export function entryFromItem(item: Record<string, AttributeValue>): LedgerEntry {
  const raw = renamed(readItem(item), ENTRY_DOMAIN_NAMES);
  return {
    userId: raw.userId,
    key: raw.key,
    amount: raw.amount,
    balanceAfter: raw.balanceAfter,
    seq: raw.seq,
    reason: raw.reason,
    bucket: raw.bucket,
    refs: raw.refs ?? {},
    createdAt: raw.createdAt,
  } as LedgerEntry;
}
