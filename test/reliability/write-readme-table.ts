import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import { isMain } from "../../infra/local/is-main.js";
import { RESULTS_DIR, type SectionResult, SECTIONS } from "./harness.js";

/**
 * Turns what the reliability suite measured (test-results/reliability/section-*.json, one per
 * test file) into results.json, a Markdown table (results.md), and, on request, the table of
 * docs/reliability.md between `<!-- reliability:start -->` and `<!-- reliability:end -->` (the
 * README links to it). The suite's global teardown calls `collectResults` after every run and
 * `writeReadmeTable` only when RELIABILITY_WRITE_README=1, so a normal `npm test` never rewrites
 * a tracked file. Standalone: `npx tsx test/reliability/write-readme-table.ts` rewrites
 * docs/reliability.md from the last run's results.
 */
export const RELIABILITY_DOC = fileURLToPath(new URL("../../docs/reliability.md", import.meta.url));
export const START_MARKER = "<!-- reliability:start -->";
export const END_MARKER = "<!-- reliability:end -->";

/** Each mode has its own block, so a heavy run never replaces the table `npm test` reproduces. */
export function markersFor(mode: string): { start: string; end: string } {
  if (mode === "default") return { start: START_MARKER, end: END_MARKER };
  return { start: `<!-- reliability-${mode}:start -->`, end: `<!-- reliability-${mode}:end -->` };
}

export interface Results {
  mode: string;
  seeds: number[];
  complete: boolean;
  missing: string[];
  /** sections whose test file did not pass (or whose outcome was not recorded) */
  failed: string[];
  sections: SectionResult[];
  totals: { drift: number; creditsLost: number; doubleGrants: number; other: number };
}

export function collectResults(dir = RESULTS_DIR): Results {
  const files = existsSync(dir) ? readdirSync(dir).filter((name) => /^section-.*\.json$/.test(name)) : [];
  const sections = files
    .map((name) => JSON.parse(readFileSync(`${dir}${name}`, "utf8")) as SectionResult)
    .sort((a, b) => a.order - b.order);
  const rows = sections.flatMap((section) => section.rows);
  const sum = (pick: (row: (typeof rows)[number]) => number) => rows.reduce((total, row) => total + pick(row), 0);
  for (const section of sections) {
    const outcome = `${dir}outcome-${section.section}.json`;
    section.passed = existsSync(outcome) && (JSON.parse(readFileSync(outcome, "utf8")) as { passed: boolean }).passed;
  }
  const missing = SECTIONS.filter((name) => !sections.some((section) => section.section === name));
  const failed = sections.filter((section) => !section.passed).map((section) => section.section);
  const results: Results = {
    mode: [...new Set(sections.map((section) => section.mode))].join("+") || "none",
    seeds: [...new Set(sections.map((section) => section.seed))],
    complete: missing.length === 0,
    missing,
    failed,
    sections,
    totals: {
      drift: sum((row) => row.drift),
      creditsLost: sum((row) => row.creditsLost),
      doubleGrants: sum((row) => row.doubleGrants),
      other: sum((row) => row.other),
    },
  };
  if (sections.length) {
    writeFileSync(`${dir}results.json`, `${JSON.stringify(results, null, 2)}\n`);
    writeFileSync(`${dir}results.md`, `${markdownTable(results)}\n`);
  }
  return results;
}

const cell = (text: string) => text.replaceAll("|", "\\|");

export function markdownTable(results: Results): string {
  const lines = [
    "| Check | What ran | Drift found | Credits lost | Double grants | Other failures | Result |",
    "| --- | --- | ---: | ---: | ---: | --- | --- |",
  ];
  for (const section of results.sections) {
    for (const row of section.rows) {
      const clean = section.passed === true && row.drift + row.creditsLost + row.doubleGrants + row.other === 0;
      lines.push(
        `| ${cell(row.check)} | ${cell(row.volume)} | ${row.drift} | ${row.creditsLost} | ${row.doubleGrants} | ` +
          `${row.other} (${cell(row.otherLabel)}) | ${clean ? "pass" : "**FAIL**"} (${(section.wallMs / 1000).toFixed(1)} s) |`,
      );
    }
  }
  const { drift, creditsLost, doubleGrants, other } = results.totals;
  lines.push(`| **Total** | | **${drift}** | **${creditsLost}** | **${doubleGrants}** | **${other}** | |`);
  lines.push(
    "",
    `Measured by the suite in ${results.mode} mode (seeds ${results.seeds.join(", ")}, set RELIABILITY_SEED to replay a storm); ` +
      "drift = accounts whose `auditAccount` found a problem; credits lost = credits the independent model expects " +
      "that accounts do not have; double grants = business facts credited more than once plus credits above the model.",
  );
  return lines.join("\n");
}

/** Replaces docs/reliability.md's table for this run's mode with this run's; refuses an incomplete or failed run. */
export function writeReadmeTable(results: Results = collectResults(), file = RELIABILITY_DOC): boolean {
  if (!results.complete) {
    console.error(`reliability: ${basename(file)} not updated, the run did not record: ${results.missing.join(", ")}`);
    return false;
  }
  if (results.failed.length) {
    console.error(`reliability: ${basename(file)} not updated, these sections did not pass: ${results.failed.join(", ")}`);
    return false;
  }
  const markers = markersFor(results.mode);
  const text = readFileSync(file, "utf8");
  const start = text.indexOf(markers.start);
  const end = text.indexOf(markers.end);
  if (start < 0 || end < start) throw new Error(`${basename(file)} has no ${markers.start} … ${markers.end} block`);
  const next = `${text.slice(0, start + markers.start.length)}\n${markdownTable(results)}\n${text.slice(end)}`;
  writeFileSync(file, next);
  console.info(`reliability: ${basename(file)} table written (${results.mode} mode)`);
  return true;
}

if (isMain(import.meta.url)) {
  const results = collectResults();
  if (!writeReadmeTable(results)) process.exitCode = 1;
}
