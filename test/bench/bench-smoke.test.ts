import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

/** Benchmarks are not tests: this only proves `npm run bench -- --quick` runs and reports every section. */
describe("npm run bench -- --quick", () => {
  const out = mkdtempSync(join(tmpdir(), "creditgate-bench-smoke-"));
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it("runs end to end and writes results.json and results.md", () => {
    const run = spawnSync(process.execPath, ["--import", "tsx", "test/bench/run.ts", "--quick", "--out", out], {
      encoding: "utf8",
      timeout: 240_000,
    });
    expect(run.status, run.stderr.slice(-2000)).toBe(0);
    const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8"));
    expect(results.quick).toBe(true);
    expect(results.gate.map((row: { concurrency: number }) => row.concurrency)).toEqual([1, 8, 32]);
    for (const row of results.gate) {
      expect(row.pairsPerSecond).toBeGreaterThan(0);
      expect(row.floorUpdatesPerSecond).toBeGreaterThan(0);
    }
    // Counted, not timed, so these can be asserted exactly.
    expect(results.requestsPerChat.steadyState).toBe(2);
    expect(results.naive.storm.oursAdmitted).toBe(50);
    expect(results.naive.storm.oursOverspentCredits).toBe(0);
    expect(results.sweep.granted).toBe(results.sweep.due);
    expect(results.sweep.noOpRerun).toEqual({ granted: 0, requests: 16 });
    expect(results.bundles.map((row: { name: string }) => row.name)).toContain("chat-gate");
    expect(results.naive.useCaseSpeedup).toBeGreaterThan(0);
    // the expired-hold chat counts the sweep's release: authorize 1 + release ≥ 1 + late settle ≥ 1
    expect(results.requestsPerChat.holdExpiredSweepRelease).toBeGreaterThanOrEqual(1);
    expect(results.requestsPerChat.holdExpiredSettle).toBeGreaterThanOrEqual(2 + results.requestsPerChat.holdExpiredSweepRelease);
    // what makes chat-gate bigger than its floor is measured per package (our own code among it)
    const gate = results.bundles.find((row: { name: string }) => row.name === "chat-gate");
    expect(gate.overFloor.map((row: { package: string }) => row.package)).toContain("creditgate");
    expect(results.targets.length).toBeGreaterThanOrEqual(6);
    for (const target of results.targets) expect(target.met || typeof target.why === "string").toBe(true);
    expect(readFileSync(join(out, "results.md"), "utf8")).toContain("| target | measured | met |");
  }, 300_000);
});
