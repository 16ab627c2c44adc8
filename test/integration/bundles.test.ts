import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Metafile } from "esbuild";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type BuiltFunction, bundleFunctions, functionEntries } from "../../infra/build.js";
import { httpEvent, invoke } from "../helpers/events.js";
import { freshTable } from "../helpers/dynamo.js";
import { functionEnv, SONNET } from "../helpers/http.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { serviceToken, userToken } from "../helpers/tokens.js";

captureLogs();
const tempRoot = mkdtempSync(join(tmpdir(), "creditgate-bundles-"));
/** Under a node_modules folder, vitest leaves the bundles to Node's own loader, as Lambda would. */
const outdir = join(tempRoot, "node_modules", "built");
let built: BuiltFunction[];
let metafile: Metafile;
let tableName: string;
// biome-ignore lint/suspicious/noExplicitAny: a built bundle has no types
let bundles: Record<string, any>;

beforeAll(async () => {
  ({ tableName } = await freshTable("bundle"));
  ({ functions: built, metafile } = await bundleFunctions(outdir));
  // The environment comes first, as in Lambda: each bundle reads it at import (cold start).
  for (const [name, value] of Object.entries(functionEnv(tableName))) vi.stubEnv(name, value);
  bundles = Object.fromEntries(
    await Promise.all(built.map(async (fn) => [fn.name, await import(/* @vite-ignore */ pathToFileURL(fn.file).href)])),
  );
}, 120_000);

afterAll(() => {
  vi.unstubAllEnvs();
  rmSync(tempRoot, { recursive: true, force: true });
});

describe("built bundles (esbuild, ESM, minified)", () => {
  it("builds one .mjs with a source map per function", () => {
    expect(built.map((fn) => fn.name).sort()).toEqual(Object.keys(functionEntries()).sort());
    for (const fn of built) {
      expect(fn.file.endsWith(".mjs")).toBe(true);
      expect(statSync(fn.file).size).toBeGreaterThan(10_000);
      expect(statSync(`${fn.file}.map`).size).toBeGreaterThan(0);
      expect(typeof bundles[fn.name]?.handler).toBe("function");
    }
  });

  it("validates with zod/mini: classic zod (not tree-shakeable, ~440 KiB per bundle) is in no bundle", () => {
    const zodModules = Object.keys(metafile.inputs).filter((path) => path.includes("node_modules/zod/"));
    expect(zodModules.some((path) => path.includes("/v4/mini/"))).toBe(true);
    expect(zodModules.filter((path) => path.includes("/v4/classic/"))).toEqual([]);
  });

  it("a bundle alone in a fresh process (as in Lambda) names a bad field with zod's English message", async () => {
    // zod/mini has no messages of its own ("Invalid input"); lib/zod-locale.ts installs classic zod's English
    // ones. In this test process other imports may have installed them already, so ask a fresh node.
    const event = httpEvent({
      routeKey: "POST /v1/gate/authorize",
      token: await serviceToken(),
      body: { requestId: "b-2", model: SONNET, inputTokens: 1000, maxOutputTokens: 1000 },
    });
    const script = `
      import { readFileSync } from "node:fs";
      const { handler } = await import(process.argv[1]);
      const res = await handler(JSON.parse(readFileSync(0, "utf8")), { awsRequestId: "r-1", getRemainingTimeInMillis: () => 30000 });
      process.stdout.write("\\nRESULT " + JSON.stringify(res) + "\\n");`;
    const chatGate = built.find((fn) => fn.name === "chat-gate")?.file ?? "";
    const out = execFileSync(process.execPath, ["--input-type=module", "-e", script, pathToFileURL(chatGate).href], {
      input: JSON.stringify(event),
      env: { ...process.env, ...functionEnv(tableName) },
      encoding: "utf8",
    });
    // stdout also carries the function's JSON logs
    const res = JSON.parse(out.split("\n").find((line) => line.startsWith("RESULT "))?.slice(7) ?? "null");
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body).error).toMatchObject({
      code: "VALIDATION_FAILED",
      field: "userId",
      message: "userId: Invalid input: expected string, received undefined",
    });
  });

  it("credits bundle answers GET /v1/credits with the signup balance", async () => {
    const user = uniqueUser("bundle");
    const res = await invoke(bundles.credits.handler, { routeKey: "GET /v1/credits", token: await userToken(user) });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ userId: user, balance: 10_000, plan: "free" });
  });

  it("chat-gate bundle answers POST /v1/gate/authorize with a hold", async () => {
    const res = await invoke(bundles["chat-gate"].handler, {
      routeKey: "POST /v1/gate/authorize",
      token: await serviceToken(),
      body: { userId: uniqueUser("bundle"), requestId: "b-1", model: SONNET, inputTokens: 1000, maxOutputTokens: 1000 },
      base64: true,
    });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ holdId: expect.stringMatching(/^hold_/), reserved: 18, available: 9_982 });
  });
});
