import type { LedgerEntry } from "../ledger/account.js";

export const LEDGER_CSV_HEADER = "userId,seq,key,amount,balanceAfter,reason,bucket,createdAt,refs";

/** RFC 4180 quoting; a leading = + - @ tab or CR is prefixed so spreadsheets never run it as a formula (OWASP CSV injection). */
function cell(value: string | number): string {
  let text = String(value);
  if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export function ledgerCsvRow(entry: LedgerEntry): string {
  return [
    entry.userId,
    entry.seq,
    entry.key,
    entry.amount,
    entry.balanceAfter,
    entry.reason,
    entry.bucket,
    new Date(entry.createdAt).toISOString(),
    JSON.stringify(entry.refs),
  ]
    .map(cell)
    .join(",");
}
