import { describe, expect, it } from "vitest";
import { LEDGER_CSV_HEADER, ledgerCsvRow } from "../../lib/ops/csv.js";
import type { LedgerEntry } from "../../lib/ledger/account.js";

const entry = (userId: string, refs: Record<string, unknown> = {}): LedgerEntry =>
  ({ userId, seq: 3, key: "admin#k1", amount: -500, balanceAfter: 9_500, reason: "admin", bucket: "purchased", createdAt: 0, refs }) as LedgerEntry;

describe("ledger CSV", () => {
  it("has one column per header field, negative amounts stay numbers", () => {
    const row = ledgerCsvRow(entry("user-1"));
    expect(row.split(",").slice(0, 8)).toEqual(["user-1", "3", "admin#k1", "-500", "9500", "admin", "purchased", "1970-01-01T00:00:00.000Z"]);
    expect(LEDGER_CSV_HEADER.split(",")).toHaveLength(9);
  });

  it.each(["=HYPERLINK(1)", "+1", "-1+2", "@SUM(A1)", "\tx", "\rx"])("neutralises a cell starting like a formula: %j", (userId) => {
    const [first] = ledgerCsvRow(entry(userId)).split(",");
    expect(first?.replace(/^"/, "").startsWith("'")).toBe(true);
  });

  it("quotes commas, quotes and newlines", () => {
    expect(ledgerCsvRow(entry("a,b")).startsWith('"a,b",')).toBe(true);
    expect(ledgerCsvRow(entry('a"b')).startsWith('"a""b",')).toBe(true);
  });
});
