import { execFile } from "node:child_process";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

describe("the test harness without Java", () => {
  it("stops with how to install Java, not a stack trace from deep inside a spawn", async () => {
    // The harness's own globalSetup, in a fresh node whose PATH has node but no java.
    const script = `
      const { setup } = await import("./test/global-setup.ts");
      try { await setup({ provide() {} }); console.log("STARTED"); }
      catch (error) { console.log("REFUSED " + error.name + "\\n" + error.message); }`;
    const { stdout } = await run(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
      cwd: ROOT,
      env: { ...process.env, PATH: dirname(process.execPath) },
    });
    expect(stdout).not.toContain("STARTED");
    expect(stdout).toContain("REFUSED JavaMissingError");
    expect(stdout).toContain("apt-get update && apt-get install -y openjdk-17-jre-headless");
  });
});
