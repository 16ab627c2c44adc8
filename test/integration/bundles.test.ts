import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Metafile } from "esbuild";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { type BuiltFunction, bundleFunctions, functionEntries } from "../../infra/build.js";
import { httpEvent, invoke } from "../helpers/events.js";
import { freshTable } from "../helpers/dynamo.js";
import { billingEnv } from "../helpers/billing.js";
import { functionEnv, SONNET } from "../helpers/http.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { signatureFor, stripeEvent, uniqueStripeId } from "../helpers/stripe-events.js";
import { startFakeSecretsManager } from "../helpers/secrets-manager.js";
import { type StripeTestServer, startStripeServer } from "../helpers/stripe-server.js";
import { serviceToken, userToken } from "../helpers/tokens.js";

captureLogs();
const tempRoot = mkdtempSync(join(tmpdir(), "creditgate-bundles-"));
/** Under a node_modules folder, vitest leaves the bundles to Node's own loader, as Lambda would. */
const outdir = join(tempRoot, "node_modules", "built");
let built: BuiltFunction[];
let metafile: Metafile;
let tableName: string;
let stripe: StripeTestServer;
// biome-ignore lint/suspicious/noExplicitAny: a built bundle has no types
let bundles: Record<string, any>;

beforeAll(async () => {
  ({ tableName } = await freshTable("bundle"));
  ({ functions: built, metafile } = await bundleFunctions(outdir));
  stripe = await startStripeServer();
  // The environment comes first, as in Lambda: each bundle reads it at import (cold start). The
  // Stripe functions talk to the loopback Stripe server.
  // The chat proxy's provider: a loopback one needs no key (it is never called here).
  for (const [name, value] of Object.entries(billingEnv(tableName, stripe.url, { UPSTREAM_BASE_URL: "http://127.0.0.1:9/v1" }))) vi.stubEnv(name, value);
  // Lambda's Node.js runtime defines the global a streaming handler is wrapped with
  // (functions/chat-proxy.ts); this process does not, so a stand-in passes the handler through.
  // (Powertools' invoke store may already have made an empty `awslambda` object here.)
  const global = globalThis as { awslambda?: Record<string, unknown> };
  const before = global.awslambda;
  global.awslambda = { ...before, streamifyResponse: (handler: unknown) => handler, HttpResponseStream: { from: (stream: unknown) => stream } };
  try {
    bundles = Object.fromEntries(
      await Promise.all(built.map(async (fn) => [fn.name, await import(/* @vite-ignore */ pathToFileURL(fn.file).href)])),
    );
  } finally {
    if (before === undefined) delete global.awslambda;
    else global.awslambda = before;
  }
}, 120_000);

afterAll(async () => {
  vi.unstubAllEnvs();
  await stripe?.close();
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

  it("subscribe bundle answers POST /v1/billing/checkout with a Stripe Checkout URL", async () => {
    const user = uniqueUser("bundle");
    const res = await invoke(bundles.subscribe.handler, {
      routeKey: "POST /v1/billing/checkout",
      token: await userToken(user),
      body: { pack: "starter" },
    });
    expect(res.status).toBe(200);
    expect(res.json.checkoutUrl).toEqual(expect.stringMatching(/^https:\/\//));
    const [session] = stripe.requestsTo("/v1/checkout/sessions", "POST").slice(-1);
    expect(session?.body).toMatchObject({ mode: "payment", client_reference_id: user });
  });

  it("portal bundle answers POST /v1/billing/portal (409 NO_BILLING_ACCOUNT before any checkout)", async () => {
    const res = await invoke(bundles.portal.handler, { routeKey: "POST /v1/billing/portal", token: await userToken(uniqueUser("bundle")) });
    expect(res.status).toBe(409);
    expect(res.json.error.code).toBe("NO_BILLING_ACCOUNT");
  });

  it("webhook bundle verifies a signed event and grants a paid credit pack once", async () => {
    const user = uniqueUser("bundle");
    const event = stripeEvent("checkout.session.completed.payment", {
      object: {
        id: uniqueStripeId("cs"),
        customer: uniqueStripeId("cus"),
        client_reference_id: user,
        payment_intent: uniqueStripeId("pi"),
        metadata: { userId: user, pack: "starter" },
      },
    });
    const payload = JSON.stringify(event);
    const post = () =>
      invoke(bundles.webhook.handler, {
        routeKey: "POST /v1/stripe/webhook",
        body: payload,
        headers: { "stripe-signature": signatureFor(payload) },
      });
    expect((await post()).status).toBe(200);
    expect((await post()).status).toBe(200); // a redelivery
    const forged = await invoke(bundles.webhook.handler, {
      routeKey: "POST /v1/stripe/webhook",
      body: payload,
      headers: { "stripe-signature": signatureFor(payload, { secret: "whsec_not_ours" }) },
    });
    expect(forged.status).toBe(400);
    const balance = await invoke(bundles.credits.handler, { routeKey: "GET /v1/credits", token: await userToken(user) });
    expect(balance.json.balance).toBe(10_000 + 50_000); // the signup bonus and the starter pack, once
  });

  it("monthly-grant-sweep bundle runs a scheduled sweep and returns its summary", async () => {
    const scheduled = { "detail-type": "Scheduled Event", source: "aws.events", time: new Date().toISOString() };
    const summary = await bundles["monthly-grant-sweep"].handler(scheduled, {
      awsRequestId: "sweep-1",
      functionName: "monthly-grant-sweep",
      getRemainingTimeInMillis: () => 60_000,
    });
    expect(summary).toMatchObject({ complete: true, failed: 0 });
    expect(summary.due).toEqual(expect.any(Number));
  });

  it("a bundle deployed with AUTH_JWT_SECRET_ARN reads the secret from Secrets Manager once, at cold start", async () => {
    const arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:creditgate/jwt-AbCdEf";
    const served = "deployed-secret-0123456789abcdef0123456789";
    const secretsManager = await startFakeSecretsManager({ [arn]: served });
    try {
      const user = uniqueUser("bundle");
      const events = [
        httpEvent({ routeKey: "GET /v1/credits", token: await userToken(user, { secret: served }) }),
        httpEvent({ routeKey: "GET /v1/credits", token: await userToken(user, { secret: served }) }),
        httpEvent({ routeKey: "GET /v1/credits", token: await userToken(user) }), // signed with another secret
      ];
      const script = `
        import { readFileSync } from "node:fs";
        const { handler } = await import(process.argv[1]);
        const statuses = [];
        for (const event of JSON.parse(readFileSync(0, "utf8"))) {
          const res = await handler(event, { awsRequestId: "r-1", getRemainingTimeInMillis: () => 30000 });
          statuses.push(res.statusCode);
        }
        process.stdout.write("\\nRESULT " + JSON.stringify(statuses) + "\\n");`;
      const credits = built.find((fn) => fn.name === "credits")?.file ?? "";
      const { AUTH_JWT_SECRET: _plain, ...env } = { ...process.env, ...functionEnv(tableName) };
      const out = await new Promise<string>((resolve, reject) => {
        const child = execFile(
          process.execPath,
          ["--input-type=module", "-e", script, pathToFileURL(credits).href],
          {
            env: {
              ...env,
              AUTH_JWT_SECRET_ARN: arn,
              AWS_ENDPOINT_URL_SECRETS_MANAGER: secretsManager.url,
              AWS_ACCESS_KEY_ID: "test",
              AWS_SECRET_ACCESS_KEY: "test",
            },
            encoding: "utf8",
          },
          (error, stdout) => (error ? reject(error) : resolve(stdout)),
        );
        child.stdin?.end(JSON.stringify(events));
      });
      const statuses = JSON.parse(out.split("\n").find((line) => line.startsWith("RESULT "))?.slice(7) ?? "null");
      expect(statuses).toEqual([200, 200, 401]);
      expect(secretsManager.calls).toEqual([arn]); // one read for the container, none per request
    } finally {
      await secretsManager.close();
    }
  });
});
