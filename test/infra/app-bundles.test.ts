import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FUNCTIONS, type FunctionName, PROXY_FUNCTION, TOPUP_FUNCTION } from "../../lib/routes.js";
import { PROXY_NAME, type ProxyFunctionName, TOPUP_NAME, type TopUpFunctionName } from "../../infra/constructs/common.js";
import { FUNCTION_NAMES, ROOT } from "./synth.js";

const run = promisify(execFile);

// biome-ignore lint/suspicious/noExplicitAny: CloudFormation JSON
type Json = any;

/**
 * What `cdk synth` runs: infra/app.ts (cdk-nag plugin included) as a child process writing a real
 * cloud assembly, then every Lambda bundle in it imported by a fresh `node` with the environment
 * the template gives that function. This needs every entry of lib/routes.ts to exist (a stub
 * would prove nothing); while one is missing this file is skipped, naming it.
 */
type Bundled = FunctionName | ProxyFunctionName | TopUpFunctionName;
/** lib/routes.ts FUNCTIONS, the chat proxy (PROXY_FUNCTION, a response-streaming handler) and auto top-up (TOPUP_FUNCTION, an SQS handler). */
const BUNDLED: Bundled[] = [...FUNCTION_NAMES, PROXY_NAME, TOPUP_NAME];
const specOf = (name: Bundled) => (name === PROXY_NAME ? PROXY_FUNCTION : name === TOPUP_NAME ? TOPUP_FUNCTION : FUNCTIONS[name]);
const missing = BUNDLED.filter((name) => !existsSync(join(ROOT, specOf(name).entry)));
if (missing.length > 0) console.warn(`[test/infra] app-bundles skipped, missing entries: ${missing.join(", ")}`);

const CONTEXT = {
  appUrl: "https://app.example.test",
  STRIPE_PRICE_PRO_MONTHLY: "price_proMonthly001",
  // Records each function's asset folder in the template (Metadata aws:asset:path).
  "aws:cdk:enable-asset-metadata": true,
};
/** What lib/secrets.ts resolves from <NAME>_ARN at cold start; plain values skip the fetch. */
const RESOLVED_SECRETS: Record<string, string> = {
  AUTH_JWT_SECRET: "bundle-test-secret-of-at-least-32-characters",
  STRIPE_SECRET_KEY: "sk_test_bundle",
  STRIPE_WEBHOOK_SECRET: "whsec_bundle",
  UPSTREAM_API_KEY: "sk-bundle-test-upstream",
};
/**
 * Lambda's Node.js runtime defines the global `awslambda` a streaming handler is wrapped with
 * (functions/chat-proxy.ts); a fresh node does not. The stand-in records that the bundle used it.
 */
const AWSLAMBDA_STAND_IN =
  "globalThis.awslambda = { streamifyResponse: (fn) => { globalThis.__streamified = true; return fn; }, HttpResponseStream: { from: (stream) => stream } };";

let outdir: string;
let synth: { stdout: string; stderr: string; code: number };
let template: { Resources: Record<string, Json> };

describe.skipIf(missing.length > 0)("infra/app.ts (what `cdk synth` runs)", () => {
  beforeAll(async () => {
    outdir = mkdtempSync(join(tmpdir(), "creditgate-app-out-"));
    const env: NodeJS.ProcessEnv = { ...process.env, CDK_OUTDIR: outdir, CDK_CONTEXT_JSON: JSON.stringify(CONTEXT) };
    // Environment-agnostic, as in CI without AWS credentials.
    delete env.CDK_DEFAULT_ACCOUNT;
    delete env.CDK_DEFAULT_REGION;
    synth = await run(process.execPath, ["--import", "tsx", "infra/app.ts"], { cwd: ROOT, env, maxBuffer: 1 << 26 })
      .then(({ stdout, stderr }) => ({ stdout, stderr, code: 0 }))
      .catch((error) => ({ stdout: error.stdout ?? "", stderr: error.stderr ?? String(error), code: error.code ?? 1 }));
    const file = join(outdir, "Creditgate.template.json");
    if (existsSync(file)) template = JSON.parse(readFileSync(file, "utf8"));
  }, 120_000);

  afterAll(() => {
    if (outdir) rmSync(outdir, { recursive: true, force: true });
  });

  it("synthesizes with cdk-nag's AwsSolutions plugin and no unacknowledged finding", () => {
    // A nag finding makes the app print the report and exit non-zero.
    expect(synth.stderr).not.toMatch(/AwsSolutions-/);
    expect(synth.code).toBe(0);
    expect(template).toBeDefined();
    const report = JSON.parse(readFileSync(join(outdir, "validation-report.json"), "utf8"));
    expect(report.pluginReports.flatMap((r: Json) => r.violations ?? [])).toEqual([]);
  });

  /** function name → its asset folder and the environment the template gives it. */
  function deployed(name: Bundled): { dir: string; env: Record<string, string> } {
    const [, resource] = Object.entries(template.Resources).find(
      ([id, r]) => r.Type === "AWS::Lambda::Function" && id.startsWith(`${name}Function`),
    ) as [string, Json];
    const dir = join(outdir, resource.Metadata["aws:asset:path"]);
    const variables: Record<string, unknown> = resource.Properties.Environment.Variables;
    // Stand-ins for what CloudFormation resolves at deploy time (table name, secret ARNs).
    const env = Object.fromEntries(
      Object.entries(variables).map(([key, value]) => [
        key,
        typeof value === "string" ? value : key === "TABLE_NAME" ? "creditgate-bundle-test" : `arn:aws:secretsmanager:us-east-1:123456789012:secret:${key}-AbCdEf`,
      ]),
    );
    for (const secret of specOf(name).secrets) env[secret] = RESOLVED_SECRETS[secret] as string;
    return { dir, env };
  }

  it.each(BUNDLED)("%s: one minified ESM bundle with a source map and the createRequire banner", (name) => {
    const { dir } = deployed(name);
    const bundle = readFileSync(join(dir, "index.mjs"), "utf8");
    expect(statSync(join(dir, "index.mjs.map")).size).toBeGreaterThan(0);
    expect(bundle.startsWith("import { createRequire } from 'module'; const require = createRequire(import.meta.url);")).toBe(true);
    expect(bundle).toMatch(/\bexport\s*\{/); // ESM, not CommonJS
    // Minified: thousands of characters per line (unminified esbuild output averages ~40). The
    // proxy's bundle carries gpt-tokenizer's o200k_base vocabulary, whose tokens with a line break
    // esbuild writes as template literals holding a raw newline: ~3,000 line breaks of data, which
    // bring its average to ~1,000; half of that still tells minified from not.
    expect(bundle.length / bundle.split("\n").length).toBeGreaterThan(name === PROXY_NAME ? 500 : 1000);
  });

  // The assembly lies under the OS temp folder, with no node_modules above it: a bundle that left a
  // package external (the AWS SDK, say) fails to resolve it here, as it would in Lambda.
  it.each(BUNDLED)("%s: the bundle cold-starts in a fresh node with its deployed environment", async (name) => {
    const { dir, env } = deployed(name);
    const streaming = name === PROXY_NAME;
    const probe = streaming
      ? `${AWSLAMBDA_STAND_IN} const m = await import(process.argv[1]); console.log(JSON.stringify({ handler: typeof m.handler, streamified: globalThis.__streamified === true }));`
      : `const m = await import(process.argv[1]); console.log(JSON.stringify({ handler: typeof m.handler }));`;
    const { stdout } = await run(process.execPath, ["--input-type=module", "-e", probe, pathToFileURL(join(dir, "index.mjs")).href], {
      env: {
        PATH: process.env.PATH ?? "",
        ...env,
        AWS_REGION: "us-east-1",
        AWS_ACCESS_KEY_ID: "test",
        AWS_SECRET_ACCESS_KEY: "test",
        // Nothing listens there: module scope must not need the network.
        DYNAMODB_ENDPOINT: "http://127.0.0.1:1",
        STRIPE_API_BASE: "http://127.0.0.1:1",
      },
      cwd: outdir,
      timeout: 30_000,
    }).catch((error) => {
      throw new Error(`${name} bundle failed to load:\n${error.stderr || error.message}`);
    });
    expect(JSON.parse(stdout.trim().split("\n").pop() as string)).toEqual(streaming ? { handler: "function", streamified: true } : { handler: "function" });
  });
});
