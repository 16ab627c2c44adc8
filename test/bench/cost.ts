import type { Units } from "./gate-rig.js";
import { round } from "./stats.js";

/**
 * DynamoDB on-demand list prices the bench turns units into dollars with: us-east-1, Standard
 * table class, the list prices in effect since AWS's 2024-11-01 on-demand price cut (source: the
 * AWS on-demand pricing page; taken 2026-12-03 from summaries of it, not re-read live). One write
 * request unit is a standard write of up to 1 KB (a transactional write costs 2 per KB); one read
 * request unit is a strongly consistent read of up to 4 KB.
 */
export const ON_DEMAND_PRICES = {
  region: "us-east-1",
  tableClass: "Standard",
  dollarsPerMillionWriteUnits: 0.625,
  dollarsPerMillionReadUnits: 0.125,
  asOf: "2024-11-01 list prices, as recorded 2026-12-03",
  source: "https://aws.amazon.com/dynamodb/pricing/on-demand/",
} as const;

/** Dollars per million operations that each consume `write` and `read` units. */
export const dollarsPerMillion = (write: number, read: number) =>
  round(write * ON_DEMAND_PRICES.dollarsPerMillionWriteUnits + read * ON_DEMAND_PRICES.dollarsPerMillionReadUnits, 3);

/** Several operations' units added up (a chat = authorize + settle). */
export function sumUnits(...all: Units[]): Units {
  const total: Units = { write: 0, read: 0, writeByPart: {}, readByPart: {}, failed: {}, transactionsDoubled: 0 };
  const add = (into: Record<string, number>, from: Record<string, number>) => {
    for (const [key, n] of Object.entries(from)) into[key] = round((into[key] ?? 0) + n, 3);
  };
  for (const units of all) {
    total.write = round(total.write + units.write, 3);
    total.read = round(total.read + units.read, 3);
    total.transactionsDoubled += units.transactionsDoubled;
    add(total.writeByPart, units.writeByPart);
    add(total.readByPart, units.readByPart);
    add(total.failed, units.failed);
  }
  return total;
}

/** Units divided by a count (the sweep's units per due account). */
export function perEach(units: Units, count: number): Units {
  const scale = (parts: Record<string, number>) => Object.fromEntries(Object.entries(parts).map(([key, n]) => [key, round(n / count, 3)]));
  return {
    write: round(units.write / count, 3),
    read: round(units.read / count, 3),
    writeByPart: scale(units.writeByPart),
    readByPart: scale(units.readByPart),
    failed: scale(units.failed),
    transactionsDoubled: round(units.transactionsDoubled / count, 3),
  };
}

/** "7 (table 4, lsi:history 2, gsi:holdDue 1)" */
export function describeUnits(total: number, parts: Record<string, number>): string {
  const entries = Object.entries(parts).filter(([, n]) => n > 0);
  if (entries.length === 0) return String(round(total, 3));
  return `${round(total, 3)} (${entries.map(([part, n]) => `${part} ${round(n, 3)}`).join(", ")})`;
}
