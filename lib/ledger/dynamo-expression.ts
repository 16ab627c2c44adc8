import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import { marshall } from "@aws-sdk/util-dynamodb";

/**
 * Collects placeholders for one DynamoDB expression. Every attribute name goes through a
 * placeholder: DynamoDB reserves hundreds of words (status, plan, size...), so we never guess.
 */
export class ExpressionParts {
  readonly names: Record<string, string> = {};
  readonly values: Record<string, AttributeValue> = {};
  private readonly nameIds = new Map<string, string>();
  private valueCount = 0;

  /** `holds.<requestId>.a` → `#n0.#n1.#n2` (each segment is a literal name, never parsed further) */
  path(...segments: string[]): string {
    return segments.map((segment) => this.name(segment)).join(".");
  }

  value(value: unknown): string {
    const placeholder = `:v${this.valueCount++}`;
    this.values[placeholder] = marshall({ v: value }, { removeUndefinedValues: true, convertClassInstanceToMap: true })
      .v as AttributeValue;
    return placeholder;
  }

  private name(segment: string): string {
    let placeholder = this.nameIds.get(segment);
    if (!placeholder) {
      placeholder = `#n${this.nameIds.size}`;
      this.nameIds.set(segment, placeholder);
      this.names[placeholder] = segment;
    }
    return placeholder;
  }

  /** Attribute maps for a request; DynamoDB rejects empty maps, so absent ones become undefined. */
  attributes(): {
    ExpressionAttributeNames?: Record<string, string>;
    ExpressionAttributeValues?: Record<string, AttributeValue>;
  } {
    return {
      ...(Object.keys(this.names).length ? { ExpressionAttributeNames: this.names } : {}),
      ...(Object.keys(this.values).length ? { ExpressionAttributeValues: this.values } : {}),
    };
  }
}

/** Builds `SET a, b REMOVE c` from the parts that are non-empty. */
export function updateExpression(sets: string[], removes: string[] = []): string {
  return [sets.length ? `SET ${sets.join(", ")}` : "", removes.length ? `REMOVE ${removes.join(", ")}` : ""]
    .filter(Boolean)
    .join(" ");
}
