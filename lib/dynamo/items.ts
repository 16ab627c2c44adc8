import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import { convertToNative } from "@aws-sdk/util-dynamodb";

/**
 * Map keys chosen outside (a requestId in `holds`, a Stripe subscription id) are stored behind
 * this prefix, so no stored map key is ever `__proto__`: the AWS SDK's own error deserializer
 * fails on an item that has one (every refused write on such an account answered 500), and
 * util-dynamodb's `marshall`/`unmarshall` drop it. No key the project writes unencoded (rate
 * counter minutes, `settle#…` outbox keys, field names) starts with it, so reads decode any key
 * that does (`readAttribute`).
 */
const ENCODED_KEY_PREFIX = "#";

/** The stored form of a map key chosen outside; write paths name it with this. */
export const storedMapKey = (key: string): string => `${ENCODED_KEY_PREFIX}${key}`;

const domainMapKey = (stored: string): string =>
  stored.startsWith(ENCODED_KEY_PREFIX) ? stored.slice(ENCODED_KEY_PREFIX.length) : stored;

/**
 * Reads a DynamoDB attribute into plain JavaScript with every map as a null-prototype object and
 * encoded map keys decoded (`storedMapKey`).
 *
 * Hand-written around util-dynamodb's `unmarshall` because it builds maps by assignment
 * (`acc[key] = …`): a map key `__proto__` (a user's requestId in `holds`) then replaces the
 * object's prototype instead of becoming a key — the hold vanishes from the account as read — and
 * `constructor` or `toString` look present in every map. The SDK's own wire deserializer keeps
 * such keys (null-prototype objects); this keeps them too, as ordinary own keys.
 */
export function readAttribute(value: AttributeValue): unknown {
  if (value.M !== undefined) {
    const map: Record<string, unknown> = Object.create(null);
    for (const [key, inner] of Object.entries(value.M)) map[domainMapKey(key)] = readAttribute(inner);
    return map;
  }
  if (value.L !== undefined) return value.L.map(readAttribute);
  return convertToNative(value);
}

/** A whole item (the top level is a map too); see `readAttribute`. Typed like `unmarshall`'s result. */
// biome-ignore lint/suspicious/noExplicitAny: an item's shape is the caller's to assert, as with unmarshall
export function readItem(item: Record<string, AttributeValue>): Record<string, any> {
  // biome-ignore lint/suspicious/noExplicitAny: see above
  return readAttribute({ M: item }) as Record<string, any>;
}
