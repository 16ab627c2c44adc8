import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

/** Benchmarks are not tests: this only proves `npm run bench -- --quick` runs and reports every section. */
describe("npm run bench -- --quick", () => {
  let out = "";
  afterAll(() => {
    if (out) rmSync(out, { recursive: true, force: true });
  });
  // The committed full-run results: a quick run must never replace them with smoke numbers.
  const committed = () => ["bench/results.json", "bench/results.md"].map((file) => (existsSync(file) ? readFileSync(file, "utf8") : ""));
  // The committed full-run table in docs/benchmarks.md: a quick run must leave it alone too.
  const benchmarksBlock = () => /<!-- bench:start -->[\s\S]*<!-- bench:end -->/.exec(readFileSync("docs/benchmarks.md", "utf8"))?.[0];

  it("runs end to end, writes results.json and results.md to a temp folder it names, and leaves bench/ alone", () => {
    const before = { committed: committed(), benchmarks: benchmarksBlock() };
    // No --out, exactly as documented: the results go to a temp folder the run prints.
    const run = spawnSync(process.execPath, ["--import", "tsx", "test/bench/run.ts", "--quick"], {
      encoding: "utf8",
      timeout: 240_000,
    });
    out = /results go to (.+?) \(a temp folder/.exec(run.stderr)?.[1] ?? "";
    expect(run.status, run.stderr.slice(-2000)).toBe(0);
    expect(out.startsWith(tmpdir())).toBe(true);
    expect(committed()).toEqual(before.committed);
    expect(benchmarksBlock()).toEqual(before.benchmarks);
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
    // Counted by the middleware, so exact: the naive gate's chat is GetItem + Query + UpdateItem
    // (authorize) and GetItem + UpdateItem (settle); ours is one UpdateItem and one transaction.
    expect(results.naive.requestsByCommand).toEqual({ GetItem: 2, Query: 1, UpdateItem: 2 });
    expect(results.naive.requestsPerChat).toBe(5);
    expect(results.steadyStateByCommand).toEqual({ TransactWriteItems: 1, UpdateItem: 1 });
    // A reason says what this run measured, and blames the write shape only near its floor.
    const why = (prefix: string) => results.targets.find((target: { target: string }) => target.target.startsWith(prefix))?.why;
    const at8 = results.gate.find((row: { concurrency: number }) => row.concurrency === 8);
    const gateWhy = why("gate pairs/s");
    if (gateWhy) {
      expect(gateWhy.startsWith("the write shape")).toBe(at8.vsShapeFloor >= 0.8);
      expect(gateWhy).toContain(String(at8.vsShapeFloor));
    }
    const naiveWhy = why("gate ≥ 3×");
    if (naiveWhy) expect(naiveWhy).toContain("the naive gate sent 5 single-item requests (GetItem 2, Query 1, UpdateItem 2)");
    expect(readFileSync(join(out, "results.md"), "utf8")).toContain("| target | measured | met |");
  }, 300_000);
});
