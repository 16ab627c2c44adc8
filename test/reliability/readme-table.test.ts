import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { allTestsPassed, type SectionResult, SECTIONS } from "./harness.js";
import { collectResults, END_MARKER, markdownTable, markersFor, RELIABILITY_DOC, START_MARKER, writeReadmeTable } from "./write-readme-table.js";

/** The reliability table (docs/reliability.md) is produced from measured results, and only from a complete run. */
function section(name: string, order: number, other = 0, mode = "default"): SectionResult {
  return {
    section: name,
    order,
    mode,
    seed: 1,
    wallMs: 1_500,
    counts: {},
    rows: [{ check: `check ${name}`, volume: "1 | 2 things", drift: 0, creditsLost: 0, doubleGrants: 0, other, otherLabel: "x" }],
  };
}

/** A results folder as a run leaves it; `failing` sections record that a test of theirs failed. */
function resultsDir(sections: SectionResult[], failing: string[] = []): string {
  const dir = `${mkdtempSync(join(tmpdir(), "reliability-"))}/`;
  for (const result of sections) {
    writeFileSync(`${dir}section-${result.section}.json`, JSON.stringify(result));
    const passed = !failing.includes(result.section);
    writeFileSync(`${dir}outcome-${result.section}.json`, JSON.stringify({ section: result.section, passed }));
  }
  return dir;
}

describe("the reliability table writer", () => {
  it("collects every section in order, totals them and escapes the table", () => {
    const dir = resultsDir(SECTIONS.map((name, i) => section(name, SECTIONS.length - i, i === 1 ? 2 : 0)).reverse());
    const results = collectResults(dir);
    expect(results.complete).toBe(true);
    expect(results.sections.map((s) => s.section)).toEqual([...SECTIONS].reverse());
    expect(results.totals).toEqual({ drift: 0, creditsLost: 0, doubleGrants: 0, other: 2 });
    const table = markdownTable(results);
    expect(table).toContain("1 \\| 2 things");
    expect(table).toContain("**FAIL**");
    expect(JSON.parse(readFileSync(`${dir}results.json`, "utf8")).totals.other).toBe(2);
  });

  it("rewrites only the block between the markers, and never from an incomplete run", () => {
    const readme = join(mkdtempSync(join(tmpdir(), "readme-")), "README.md");
    writeFileSync(readme, `# x\n\nbefore\n${START_MARKER}\nold table\n${END_MARKER}\nafter\n`);
    const partial = collectResults(resultsDir([section("gate-storm", 1)]));
    expect(writeReadmeTable(partial, readme)).toBe(false);
    expect(readFileSync(readme, "utf8")).toContain("old table");
    const full = collectResults(resultsDir(SECTIONS.map((name, i) => section(name, i))));
    expect(writeReadmeTable(full, readme)).toBe(true);
    const text = readFileSync(readme, "utf8");
    expect(text).not.toContain("old table");
    expect(text.startsWith("# x\n\nbefore\n")).toBe(true);
    expect(text.endsWith(`${END_MARKER}\nafter\n`)).toBe(true);
    expect(text).toContain("| check gate-storm |");
    // a heavy run fills its own block and leaves the default one alone
    const heavy = markersFor("heavy");
    writeFileSync(readme, `${START_MARKER}\ndefault table\n${END_MARKER}\n${heavy.start}\nold heavy\n${heavy.end}\n`);
    expect(writeReadmeTable(collectResults(resultsDir(SECTIONS.map((name, i) => section(name, i, 0, "heavy")))), readme)).toBe(true);
    const both = readFileSync(readme, "utf8");
    expect(both).toContain("default table");
    expect(both).not.toContain("old heavy");
    expect(both).toContain("in heavy mode");
    // a run where a test failed never reaches the table, even when every counted failure is zero
    writeFileSync(readme, `${START_MARKER}\nold table\n${END_MARKER}\n`);
    const failed = collectResults(resultsDir(SECTIONS.map((name, i) => section(name, i)), ["faults"]));
    expect(failed.failed).toEqual(["faults"]);
    expect(markdownTable(failed)).toMatch(/\| check faults \|.*\*\*FAIL\*\*/);
    expect(writeReadmeTable(failed, readme)).toBe(false);
    // so does a section whose outcome was never recorded (its file crashed before its last hook)
    const unknownDir = resultsDir(SECTIONS.map((name, i) => section(name, i)));
    rmSync(`${unknownDir}outcome-auth-matrix.json`);
    expect(writeReadmeTable(collectResults(unknownDir), readme)).toBe(false);
    expect(readFileSync(readme, "utf8")).toContain("old table");
    writeFileSync(readme, "no markers");
    expect(() => writeReadmeTable(full, readme)).toThrow(/reliability:start/);
  });
});

describe("allTestsPassed", () => {
  const test = (state: string) => ({ type: "test", result: { state } });
  it("passes only a tree whose every test passed and whose hooks did not fail", () => {
    expect(allTestsPassed({ type: "suite", tasks: [test("pass"), { type: "suite", tasks: [test("pass")] }] })).toBe(true);
    expect(allTestsPassed({ type: "suite", tasks: [test("pass"), { type: "suite", tasks: [test("fail")] }] })).toBe(false);
    expect(allTestsPassed({ type: "suite", tasks: [test("skip")] })).toBe(false);
    expect(allTestsPassed({ type: "suite", tasks: [test("pass")], result: { state: "fail" } })).toBe(false);
  });
});

describe("docs/reliability.md's reliability table", () => {
  it("shows every section of the suite, each passing with zero failures", () => {
    const text = readFileSync(RELIABILITY_DOC, "utf8");
    const block = text.slice(text.indexOf(START_MARKER), text.indexOf(END_MARKER));
    const rows = block.split("\n").filter((line) => line.startsWith("| ") && !line.startsWith("| Check") && !line.startsWith("| **Total") && !line.startsWith("| ---"));
    expect(rows).toHaveLength(SECTIONS.length);
    for (const row of rows) {
      const cells = row.split(" | ");
      expect(cells.slice(2, 5)).toEqual(["0", "0", "0"]);
      expect(cells[5]).toMatch(/^0 \(/);
      expect(cells[6]).toMatch(/^pass \(/);
    }
    expect(block).toContain("| **Total** | | **0** | **0** | **0** | **0** | |");
  });
});
