/**
 * Maps keyed by strings a user chose (requestIds in an account's holds) must never answer for
 * keys JavaScript gives every object (`constructor`, `toString`, `__proto__`…): these read only
 * a map's own keys. Records read from DynamoDB are null-prototype maps already (lib/dynamo/items.ts);
 * this also keeps maps built in memory honest.
 */
export function ownValue<T>(map: Readonly<Record<string, T>> | undefined, key: string): T | undefined {
  return map !== undefined && Object.hasOwn(map, key) ? map[key] : undefined;
}

/** An empty map with no prototype: no key is present until it is set. */
export function emptyMap<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}
