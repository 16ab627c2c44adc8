import type { AttributeValue } from "@aws-sdk/client-dynamodb";

const utf8 = (text: string) => Buffer.byteLength(text, "utf8");

/**
 * An attribute value's size by DynamoDB's item-size rules (what write units are billed on: one
 * write unit per started KiB of the larger of the item before and after a write). Numbers are
 * approximate as DynamoDB documents them: 1 byte per two significant digits, plus 1.
 */
export function valueBytes(value: AttributeValue): number {
  if (value.S !== undefined) return utf8(value.S);
  if (value.N !== undefined) {
    const digits = value.N.replace(/^-/, "").replace(".", "").replace(/^0+/, "").replace(/0+$/, "").length;
    return Math.ceil(Math.max(1, digits) / 2) + 1;
  }
  if (value.B !== undefined) return value.B.byteLength;
  if (value.BOOL !== undefined || value.NULL !== undefined) return 1;
  if (value.M !== undefined) return 3 + Object.entries(value.M).reduce((sum, [name, inner]) => sum + utf8(name) + valueBytes(inner) + 1, 0);
  if (value.L !== undefined) return 3 + value.L.reduce((sum, inner) => sum + valueBytes(inner) + 1, 0);
  if (value.SS !== undefined) return value.SS.reduce((sum, text) => sum + utf8(text), 0);
  if (value.NS !== undefined) return value.NS.reduce((sum, n) => sum + valueBytes({ N: n }), 0);
  if (value.BS !== undefined) return value.BS.reduce((sum, bytes) => sum + bytes.byteLength, 0);
  return 0;
}

/** An item's size in bytes (attribute names plus values), and each top-level attribute's share. */
export function itemBytes(item: Record<string, AttributeValue>): { bytes: number; byAttribute: Record<string, number> } {
  const byAttribute = Object.fromEntries(
    Object.entries(item)
      .map(([name, value]) => [name, utf8(name) + valueBytes(value)] as const)
      .sort(([, a], [, b]) => b - a),
  );
  return { bytes: Object.values(byAttribute).reduce((sum, n) => sum + n, 0), byAttribute };
}
