import { mkdirSync, readdirSync, rmSync } from "node:fs";
import { RESULTS_DIR } from "./harness.js";
import { collectResults, writeReadmeTable } from "./write-readme-table.js";

/**
 * The reliability suite's results: cleared before a run (a stale section from an earlier run must
 * never reach docs/reliability.md), collected after it into test-results/reliability/results.{json,md},
 * and written into docs/reliability.md only when RELIABILITY_WRITE_README=1.
 */
export function setup(): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  for (const name of readdirSync(RESULTS_DIR)) {
    if (/^(section-.*|outcome-.*|results)\.(json|md)$/.test(name)) rmSync(`${RESULTS_DIR}${name}`);
  }
}

export function teardown(): void {
  const results = collectResults();
  if (process.env.RELIABILITY_WRITE_README === "1" && !writeReadmeTable(results)) process.exitCode = 1;
}
