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
      timeout: 420_000,
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
    expect(results.targets.length).toBeGreaterThanOrEqual(9);
    for (const target of results.targets) expect(target.met || typeof target.why === "string").toBe(true);
    // Counted by the middleware, so exact: the naive gate's chat is GetItem + Query + UpdateItem
    // (authorize) and GetItem + UpdateItem (settle); ours is one UpdateItem and one transaction.
    expect(results.naive.requestsByCommand).toEqual({ GetItem: 2, Query: 1, UpdateItem: 2 });
    expect(results.naive.requestsPerChat).toBe(5);
    expect(results.steadyStateByCommand).toEqual({ TransactWriteItems: 1, UpdateItem: 1 });
    // The stream the webhooks are derived from adds nothing to a chat: on a stream-enabled table it
    // sends the requests and costs the units it does on the bench's own (which have no stream)...
    expect(results.streamCheck.withStream).toEqual(results.streamCheck.withoutStream);
    expect(results.streamCheck.withStream.write).toBeGreaterThan(0);
    // ...and a chat's requests and write units are the committed full run's: the hot path gained no write.
    const committedResults = JSON.parse(before.committed[0] as string);
    const chatOps = (units: { operations: { operation: string; requests: number; write: number }[] }) =>
      units.operations.filter((row) => ["authorize (steady state)", "settle, fast path"].includes(row.operation)).map(({ operation, requests, write }) => ({ operation, requests, write }));
    expect(chatOps(results.units)).toHaveLength(2);
    expect(chatOps(results.units)).toEqual(chatOps(committedResults.units));
    expect(results.requestsPerChat.steadyState).toBe(committedResults.requestsPerChat.steadyState);
    // A reason says what this run measured; a target the design cannot meet is dropped with the run's ceiling.
    const why = (prefix: string) => results.targets.find((target: { target: string }) => target.target.startsWith(prefix))?.why;
    const dropped = (prefix: string) => results.droppedTargets.find((target: { target: string }) => target.target.startsWith(prefix));
    const at8 = results.gate.find((row: { concurrency: number }) => row.concurrency === 8);
    const shapeWhy = why("gate pairs/s ≥ 0.8 × its shape floor");
    if (shapeWhy) expect(shapeWhy).toContain(String(at8.shapeFloorPairsPerSecond));
    const naive = dropped("gate ≥ 3×")?.why ?? why("gate ≥ 3×");
    if (naive) expect(naive).toContain("the naive gate sent 5 single-item requests (GetItem 2, Query 1, UpdateItem 2)");
    for (const target of results.droppedTargets) expect(target.why).toContain("the design's own ceiling is below it");

    // (1) authorize alone against a raw conditional write on an item of the same size
    expect(results.critical.map((row: { concurrency: number }) => row.concurrency)).toEqual([1, 8, 32]);
    for (const row of results.critical) {
      expect(row.authorize.p50Ms).toBeGreaterThan(0);
      expect(row.raw.p50Ms).toBeGreaterThan(0);
      expect(row.authorize.requestsPerCall).toBe(1);
      const target = results.targets.find((t: { target: string }) => t.target.endsWith(`p50 at concurrency ${row.concurrency}`));
      expect(target.measured).toBe(row.p50VsRaw);
    }
    // (2) units as DynamoDB reports them: a steady-state chat is authorize 1 + settle 4 on the table + 2 for the history LSI
    const ops = (name: string) => results.units.operations.find((row: { operation: string }) => row.operation.startsWith(name));
    expect(ops("authorize (steady state)").write).toBe(1);
    expect(ops("settle, fast path").writeByPart).toEqual({ table: 4, "lsi:history": 2 });
    expect(results.units.perChat.steadyState.write).toBe(7);
    expect(results.units.perChat.steadyState.dollarsPerMillionChats).toBe(7 * results.units.prices.dollarsPerMillionWriteUnits);
    for (const type of ["invoice.paid", "checkout.session.completed (pack)", "customer.subscription.updated", "charge.refunded", "charge.dispute.created"]) {
      expect(ops(`webhook ${type}`)?.write).toBeGreaterThan(0);
    }
    expect(results.sweep.unitsPerDueAccount.write).toBeGreaterThan(0);
    expect(results.units.itemSizes.map((row: { openHolds: number }) => row.openHolds)).toEqual([0, 10, 60]);
    const [none, ten, sixty] = results.units.itemSizes;
    expect(none.bytes).toBeLessThan(ten.bytes);
    expect(ten.bytes).toBeLessThan(sixty.bytes);
    expect(results.units.busyMinute.after.bytes).toBeGreaterThan(0);
    // (5) the history index: only entry writes pay for it, and dropping it leaves the rest of each write as it was
    for (const row of results.units.historyIndex.writes) expect(row.withoutLsi).toBe(row.withLsi - row.historyIndexUnits);
    expect(results.units.historyIndex.writes.find((row: { operation: string }) => row.operation === "settleFast").historyIndexUnits).toBe(2);
    // (3) one busy account at concurrency 1..64 against raw writes on one item
    expect(results.busyAccount.rows.map((row: { concurrency: number }) => row.concurrency)).toEqual([1, 2, 4, 8, 16, 32, 64]);
    for (const row of results.busyAccount.rows) expect(row.floorUpdatesPerSecond).toBeGreaterThan(0);
    // (6) the proxy against the stand-in straight: same streams, the proxy's DynamoDB requests counted
    expect(results.proxy.rows.map((row: { concurrency: number }) => row.concurrency)).toEqual([1, 16]);
    for (const row of results.proxy.rows) {
      expect(row.proxy.tokensPerStream).toBe(row.direct.tokensPerStream);
      expect(row.direct.tokensPerStream).toBeGreaterThan(100);
      expect(row.direct.ttft.p50Ms).toBeGreaterThanOrEqual(results.proxy.scenario.firstTokenDelayMs);
      expect(row.proxy.ttft.p50Ms).toBeGreaterThan(0);
      expect(row.authorize.p50Ms).toBeGreaterThan(0);
      expect(row.rateRatio).toBeGreaterThan(0);
      // one authorize write and one settle per call (more only when two calls of a user overlap)
      expect(row.requestsPerCall).toBeGreaterThanOrEqual(2);
      // the proxy's process did the relaying: it used CPU for it, measured in its own process
      expect(row.proxyCpu.msPerCall).toBeGreaterThan(0);
      expect(row.proxyCpu.microsecondsPerChunk).toBeGreaterThan(0);
      expect(results.targets.filter((t: { target: string }) => t.target.endsWith(`, concurrency ${row.concurrency}`) && t.target.startsWith("proxy "))).toHaveLength(2);
    }
    expect(readFileSync(join(out, "results.md"), "utf8")).toContain("### Through the proxy: first token and streaming rate");
    expect(readFileSync(join(out, "results.md"), "utf8")).toContain("| target | measured | met |");
  }, 480_000);
});
