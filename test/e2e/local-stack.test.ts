import { type ChildProcess, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { devPrices } from "../../infra/local/dev-prices.js";
import { findFreePort } from "../../infra/local/dynamodb-local.js";
import { runOps } from "../../infra/ops/cli.js";
import { localDynamoClient } from "../../lib/dynamo/local-client.js";
import { DAY_MS } from "../../lib/periods.js";
import { checkedFetch, startLocalStack, until } from "../helpers/e2e.js";
import { seedFreeAccounts } from "../helpers/seed.js";
import { signatureFor, uniqueStripeId, WEBHOOK_SECRET } from "../helpers/stripe-events.js";
import { checkoutSession, invoice, invoiceLine, officialEvent, olderApiInvoice, without } from "../helpers/stripe-official.js";
import { TEST_SECRET, userToken } from "../helpers/tokens.js";

const node = process.execPath; // Node 24, as npm scripts run it

const exited = (child: ChildProcess) =>
  new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.once("exit", (code) => resolve(code));
  });

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: "127.0.0.1" });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

describe("npm start: the whole product locally", () => {
  let port: number;
  let dynamoPort: number;
  let stack: ReturnType<typeof startLocalStack>;

  beforeAll(async () => {
    port = await findFreePort();
    dynamoPort = await findFreePort();
    stack = startLocalStack({
      PORT: String(port),
      DYNAMODB_LOCAL_PORT: String(dynamoPort),
      // unset: in memory the stack generates a webhook secret that nothing else can read
      STRIPE_WEBHOOK_SECRET: "",
      // an operator's own JWT secret, which the stack must use instead of generating one
      AUTH_JWT_SECRET: TEST_SECRET,
      SWEEP_INTERVAL_SECONDS: "1",
    });
    await until(() => stack.output().includes("Ctrl-C stops everything."), "the start banner");
  }, 120_000);

  afterAll(async () => {
    // Ctrl-C, not SIGKILL: a killed start.ts would leave its DynamoDB Local (Java) running when
    // the Ctrl-C test below was filtered out or failed.
    if (stack.child.exitCode !== null) return;
    stack.child.kill("SIGINT");
    const stopped = await Promise.race([exited(stack.child), new Promise((resolve) => setTimeout(resolve, 15_000, "timeout"))]);
    if (stopped === "timeout") stack.child.kill("SIGKILL");
  }, 30_000);

  it("prints a curl flow that authorizes, settles and shows the balance over HTTP", () => {
    const banner = stack.output();
    expect(banner).toContain(`creditgate is running at http://127.0.0.1:${port}`);
    const flow = banner
      .split("\n")
      .filter((line) => (line.startsWith("HOLD=") || line.startsWith("curl ")) && !line.includes("/v1/chat/completions"))
      .join("\n");
    expect(flow.split("\n")).toHaveLength(3);
    // plain POSIX sh (dash on Debian), not bash: nothing bash-only such as $RANDOM
    const run = spawnSync("sh", ["-c", flow], { encoding: "utf8", timeout: 30_000 });
    expect(run.status).toBe(0);
    const [holdId, settleJson, creditsJson] = run.stdout.trim().split("\n");
    expect(holdId).toMatch(/^hold_/);
    const settled = JSON.parse(settleJson as string);
    expect(settled).toMatchObject({ status: "settled", charged: 9, released: 7, balance: 10_000 - 9 });
    expect(JSON.parse(creditsJson as string)).toMatchObject({ userId: "dev-user", balance: 10_000 - 9, held: 0 });
  });

  it("takes signed Stripe events from `npm run stripe:event` and shows them in balance and history", async () => {
    // the in-memory dev secret, printed in full by the banner: a truncated one would fail the signature
    const WEBHOOK_SECRET = /STRIPE_WEBHOOK_SECRET=(\S+) npm run stripe:event/.exec(stack.output())?.[1] as string;
    expect(WEBHOOK_SECRET).toMatch(/^whsec_[0-9a-f]{48}$/);
    const post = (...args: string[]) =>
      spawnSync(node, ["--import", "tsx", "infra/local/stripe-event.ts", ...args, "--url", `http://127.0.0.1:${port}`], {
        encoding: "utf8",
        env: { ...process.env, STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET },
        timeout: 30_000,
      });
    const pack = post("checkout.session.completed", "--user", "dev-user", "--pack", "starter");
    expect(pack.status).toBe(0);
    expect(pack.stdout).toMatch(/→ 200 .*pack_granted/);
    const again = post("checkout.session.completed", "--user", "dev-user", "--pack", "starter");
    expect(again.stdout).toMatch(/pack_already_granted/);
    const forged = post("checkout.session.completed", "--user", "dev-user", "--pack", "pro", "--secret", "whsec_wrong");
    expect(forged.status).toBe(1);
    expect(forged.stdout).toMatch(/→ 400/);

    const userToken = /user {5}\(sub dev-user\) {3}(\S+)/.exec(stack.output())?.[1];
    expect(userToken).toBeTruthy();
    const get = async (path: string) => {
      const response = await checkedFetch(`http://127.0.0.1:${port}${path}`, { headers: { authorization: `Bearer ${userToken}` } });
      // biome-ignore lint/suspicious/noExplicitAny: response JSON
      return { status: response.status, json: (await response.json()) as any };
    };
    const credits = await get("/v1/credits");
    expect(credits.json).toMatchObject({ balance: 10_000 - 9 + 50_000, purchased: 50_000 });
    const history = await get("/v1/credits/history");
    expect(history.json.entries.map((entry: { reason: string }) => entry.reason)).toEqual(["pack", "settle", "signup"]);
    const unknown = await get("/v1/nothing-here");
    expect(unknown.status).toBe(404);
    // no Stripe keys: billing routes say so and how to fix it
    const subscribe = await checkedFetch(`http://127.0.0.1:${port}/v1/billing/subscribe`, {
      method: "POST",
      headers: { authorization: `Bearer ${userToken}`, "content-type": "application/json" },
      body: JSON.stringify({ plan: "pro", interval: "month" }),
    });
    expect(subscribe.status).toBe(503);
    const refusal = (await subscribe.json()) as { error: { code: string; message: string } };
    expect(refusal.error.code).toBe("STRIPE_NOT_CONFIGURED");
    expect(refusal.error.message).toContain("STRIPE_SECRET_KEY");
  });

  it("prints a stripe:event command that works exactly as printed, in memory", () => {
    const command = /^ +try: (STRIPE_WEBHOOK_SECRET=.*)$/m.exec(stack.output())?.[1] as string;
    expect(command).toContain(`npm run stripe:event -- invoice.paid --user dev-user --url http://127.0.0.1:${port}`);
    const run = spawnSync("sh", ["-c", command], { encoding: "utf8", timeout: 60_000, env: { ...process.env, STRIPE_WEBHOOK_SECRET: "" } });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/invoice\.paid evt_\S+ → 200/);
  });

  it("honours AUTH_JWT_SECRET from the environment", async () => {
    const credits = (token: string) => checkedFetch(`http://127.0.0.1:${port}/v1/credits`, { headers: { authorization: `Bearer ${token}` } });
    const ours = await credits(await userToken("jwt-user"));
    expect(ours.status).toBe(200);
    expect(await ours.json()).toMatchObject({ userId: "jwt-user" });
    // and only it: a token signed with any other secret is refused
    expect((await credits(await userToken("jwt-user", { secret: "another-secret-0123456789abcdef0123456789" }))).status).toBe(401);
  });

  it("serves the metered chat proxy streaming: the README's three lines of the openai SDK, charged in the ledger", async () => {
    expect(stack.output()).toContain(`Chat proxy      OpenAI-compatible, streaming: baseURL http://127.0.0.1:${port}/v1 (model provider: a local stand-in`);
    const userId = `proxy-e2e-${process.pid}`;
    const token = await userToken(userId);
    // the README's "Use it from the OpenAI SDK", word for word but the URL and token
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: token });
    const stream = await client.chat.completions.create({ model: "anthropic/claude-sonnet-4.5", messages: [{ role: "user", content: "Hello!" }], stream: true });
    let text = "";
    let pieces = 0;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      pieces += 1;
    }
    expect(text).toBe("This is creditgate's local stand-in model. You said: Hello!");
    expect(pieces).toBeGreaterThan(5);
    const history = await checkedFetch(`http://127.0.0.1:${port}/v1/credits/history`, { headers: { authorization: `Bearer ${token}` } });
    const entries = ((await history.json()) as { entries: { reason: string; amount: number }[] }).entries;
    expect(entries.filter((entry) => entry.reason === "settle")).toHaveLength(1);
    expect(entries.find((entry) => entry.reason === "settle")?.amount).toBeLessThan(0);
    // and the banner's curl line streams, as printed (it runs after the tests that count dev-user's credits)
    const line = stack.output().split("\n").find((candidate) => candidate.startsWith("curl -sN") && candidate.includes("/v1/chat/completions"));
    const run = spawnSync("sh", ["-c", line as string], { encoding: "utf8", timeout: 30_000 });
    expect(run.stdout).toContain('"content":" Hello"');
    expect(run.stdout.trim().endsWith("data: [DONE]")).toBe(true);
  });

  it("runs the sweep on its timer: a due free allowance is granted without any request", async () => {
    const client = localDynamoClient(`http://127.0.0.1:${dynamoPort}`);
    const userId = `sweep-e2e-${process.pid}`;
    try {
      // an account whose 30-day free period ended a day ago: only the sweep may grant it now,
      // since GET /v1/credits only reads
      await seedFreeAccounts(client, "creditgate-local", [{ userId, createdAt: Date.now() - 31 * DAY_MS }]);
    } finally {
      client.destroy();
    }
    const token = await userToken(userId);
    const history = async () => {
      const response = await checkedFetch(`http://127.0.0.1:${port}/v1/credits/history`, { headers: { authorization: `Bearer ${token}` } });
      return ((await response.json()) as { entries: { reason: string }[] }).entries.map((entry) => entry.reason);
    };
    let reasons = await history();
    const deadline = Date.now() + 15_000; // SWEEP_INTERVAL_SECONDS=1: a few ticks at most
    while (!reasons.includes("allowance") && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      reasons = await history();
    }
    expect(reasons).toContain("allowance");
    const credits = await checkedFetch(`http://127.0.0.1:${port}/v1/credits`, { headers: { authorization: `Bearer ${token}` } });
    expect(Date.parse(((await credits.json()) as { nextGrantAt: string }).nextGrantAt)).toBeGreaterThan(Date.now());
  });

  it("stops everything on Ctrl-C and leaves nothing running", async () => {
    stack.child.kill("SIGINT");
    expect(await exited(stack.child)).toBe(0);
    expect(stack.output()).toContain("creditgate stopped.");
    expect(await portOpen(port)).toBe(false);
    expect(await portOpen(dynamoPort)).toBe(false);
    const java = spawnSync("pgrep", ["-f", `DynamoDBLocal.jar.*-port ${dynamoPort}`], { encoding: "utf8" });
    expect(java.stdout.trim()).toBe("");
  });
});

describe("npm start: data kept on disk between runs (the default)", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "creditgate-data-"));
  const env = async () => ({
    PORT: String(await findFreePort()),
    DYNAMODB_LOCAL_PORT: String(await findFreePort()),
    CREDITGATE_DATA_DIR: join(dataDir, "nested", "folder"), // not there yet: start creates it
    SWEEP_INTERVAL_SECONDS: "3600",
  });
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  async function run(vars: Record<string, string>, work: (base: string, userToken: string) => Promise<void>): Promise<void> {
    const stack = startLocalStack(vars, []);
    try {
      await until(() => stack.output().includes("Ctrl-C stops everything.") || stack.child.exitCode !== null, "the start banner");
      expect(stack.errors()).toBe("");
      expect(stack.output()).toContain(`data in ${join(vars.CREDITGATE_DATA_DIR as string, "dynamodb")}`);
      const userToken = /user {5}\(sub dev-user\) {3}(\S+)/.exec(stack.output())?.[1] as string;
      await work(`http://127.0.0.1:${vars.PORT}`, userToken);
    } finally {
      stack.child.kill("SIGINT");
      expect(await exited(stack.child)).toBe(0);
    }
  }

  const credits = async (base: string, token: string) => {
    const response = await checkedFetch(`${base}/v1/credits`, { headers: { authorization: `Bearer ${token}` } });
    expect(response.status).toBe(200);
    return (await response.json()) as Record<string, unknown>;
  };

  it("creates the data folder, keeps balances, plans and the dev secrets across a restart", async () => {
    let firstToken = "";
    let before: Record<string, unknown> = {};
    await run(await env(), async (base, userToken) => {
      firstToken = userToken;
      // no STRIPE_WEBHOOK_SECRET given: stripe:event finds the generated one in the data folder
      const post = (...args: string[]) => {
        const sent = spawnSync(node, ["--import", "tsx", "infra/local/stripe-event.ts", ...args, "--url", base], {
          encoding: "utf8",
          env: { ...process.env, CREDITGATE_DATA_DIR: join(dataDir, "nested", "folder"), STRIPE_WEBHOOK_SECRET: "" },
          timeout: 30_000,
        });
        expect(sent.status, sent.stderr).toBe(0);
        return sent.stdout;
      };
      expect(post("customer.subscription.created", "--user", "dev-user", "--plan", "pro")).toMatch(/→ 200/);
      expect(post("invoice.paid", "--user", "dev-user", "--plan", "pro", "--id", "first")).toMatch(/allowance_granted/);
      expect(post("checkout.session.completed", "--user", "dev-user", "--pack", "starter", "--id", "p1")).toMatch(/pack_granted/);
      expect(post("charge.refunded", "--user", "dev-user", "--pack", "starter", "--id", "p1", "--amount", "500")).toMatch(/clawed_back/);
      before = await credits(base, userToken);
      // signup 10,000 + pro allowance 100,000 + starter pack 50,000 − half the pack refunded 25,000
      expect(before).toMatchObject({ plan: "pro", balance: 135_000, purchased: 25_000 });
    });
    await run(await env(), async (base) => {
      expect(await credits(base, firstToken)).toEqual(before); // yesterday's token, yesterday's account
    });
  }, 180_000);
});

describe("npm start: Stripe events that cannot be applied are parked, then applied once (restart on the same data folder)", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "creditgate-parked-"));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));
  /** a plus/month price id the first run does not know: configured for the second run */
  const NEW_PRICE = "price_plus_monthly_2027";
  const T = Math.floor(Date.now() / 1000);
  const MONTH = 31 * 86_400;

  async function run(prices: Record<string, string>, work: (base: string, dynamoPort: number) => Promise<void>): Promise<void> {
    const port = await findFreePort();
    const dynamoPort = await findFreePort();
    const stack = startLocalStack(
      {
        PORT: String(port),
        DYNAMODB_LOCAL_PORT: String(dynamoPort),
        CREDITGATE_DATA_DIR: dataDir,
        STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
        AUTH_JWT_SECRET: TEST_SECRET,
        SWEEP_INTERVAL_SECONDS: "3600",
        ...prices,
      },
      [],
    );
    try {
      await until(() => stack.output().includes("Ctrl-C stops everything.") || stack.child.exitCode !== null, "the start banner");
      expect(stack.errors()).toBe("");
      await work(`http://127.0.0.1:${port}`, dynamoPort);
    } finally {
      stack.child.kill("SIGINT");
      expect(await exited(stack.child)).toBe(0);
    }
  }

  /** `npm run ops -- …` as an operator runs it against the local table, with the stack's price ids. */
  async function ops(dynamoPort: number, prices: Record<string, string>, ...argv: string[]) {
    const out: string[] = [];
    const env = { TABLE_NAME: "creditgate-local", DYNAMODB_ENDPOINT: `http://127.0.0.1:${dynamoPort}`, ...devPrices(prices) };
    const code = await runOps(argv, env, { out: (line) => out.push(line), err: (line) => out.push(line) });
    return { code, out };
  }

  // biome-ignore lint/suspicious/noExplicitAny: Stripe events are arbitrary JSON
  async function send(base: string, event: any): Promise<{ status: number; outcome: string }> {
    const payload = JSON.stringify(event);
    const response = await checkedFetch(`${base}/v1/stripe/webhook`, {
      method: "POST",
      headers: { "content-type": "application/json", "stripe-signature": signatureFor(payload, { secret: WEBHOOK_SECRET }) },
      body: payload,
    });
    return { status: response.status, outcome: ((await response.json()) as { outcome: string }).outcome };
  }

  async function balance(base: string, userId: string): Promise<number> {
    const response = await checkedFetch(`${base}/v1/credits`, { headers: { authorization: `Bearer ${await userToken(userId)}` } });
    expect(response.status).toBe(200);
    const body = (await response.json()) as Record<string, unknown>;
    expect(JSON.stringify(body)).not.toMatch(/parked/i); // nothing about parked events reaches users
    return body.balance as number;
  }

  const paidInvoice = (input: { userId: string | null; customer: string; price: string }) => {
    const id = uniqueStripeId("in");
    const subscription = uniqueStripeId("sub");
    const line = { price: input.price, proration: false, amount: 1_900, period: { start: T, end: T + MONTH }, subscription };
    return invoice({
      id,
      customer: input.customer,
      subscription,
      metadata: input.userId ? { userId: input.userId } : null,
      billingReason: "subscription_create",
      status: "paid",
      amountPaid: 1_900,
      lines: [invoiceLine(id, line)],
    });
  };

  it("each case of issue 16 ends applied exactly once (after a restart with the price configured, or the missing checkout completion)", async () => {
    const pid = process.pid;
    const users = { price: `e2e-price-${pid}`, older: `e2e-older-${pid}`, pack: `e2e-pack-${pid}`, customer: `e2e-customer-${pid}`, field: `e2e-field-${pid}` };
    const unknownPrice = officialEvent("invoice.paid", paidInvoice({ userId: users.price, customer: uniqueStripeId("cus"), price: NEW_PRICE }));
    const olderShape = officialEvent("invoice.paid", olderApiInvoice(paidInvoice({ userId: users.older, customer: uniqueStripeId("cus"), price: NEW_PRICE })));
    const packSession = checkoutSession({
      mode: "payment",
      customer: uniqueStripeId("cus"),
      paymentStatus: "paid",
      paymentIntent: uniqueStripeId("pi"),
      amountTotal: 1_000,
      metadata: { userId: users.pack },
      clientReferenceId: users.pack,
    });
    const packless = officialEvent("checkout.session.completed", packSession);
    const lateCustomer = uniqueStripeId("cus");
    const beforeCheckout = officialEvent("invoice.paid", paidInvoice({ userId: null, customer: lateCustomer, price: devPrices({}).STRIPE_PRICE_PRO_MONTHLY as string }));
    const fieldless = paidInvoice({ userId: users.field, customer: uniqueStripeId("cus"), price: devPrices({}).STRIPE_PRICE_PRO_MONTHLY as string });
    fieldless.lines.data = fieldless.lines.data.map((line: unknown) => without(without(line, "parent.subscription_item_details.proration"), "period.end"));
    const noDecisionField = officialEvent("invoice.paid", fieldless);

    await run({}, async (base, dynamoPort) => {
      expect(await send(base, unknownPrice)).toEqual({ status: 200, outcome: "parked_unknown_price" });
      expect(await send(base, olderShape)).toEqual({ status: 200, outcome: "parked_unknown_price" });
      expect(await send(base, packless)).toEqual({ status: 200, outcome: "parked_unknown_pack" });
      expect(await send(base, beforeCheckout)).toEqual({ status: 200, outcome: "parked_unknown_customer" });
      // a line without a field no decision reads (proration, period.end) is applied at once
      expect(await send(base, noDecisionField)).toEqual({ status: 200, outcome: "allowance_granted" });

      const listed = await ops(dynamoPort, {}, "events", "list");
      expect(listed.code).toBe(0);
      const reasonOf = (id: string) => listed.out.find((line) => line.startsWith(id))?.split(/\s+/)[2];
      expect([unknownPrice.id, olderShape.id, packless.id, beforeCheckout.id].map(reasonOf)).toEqual(["unknown_price", "unknown_price", "unknown_pack", "unknown_customer"]);
      expect(reasonOf(noDecisionField.id)).toBeUndefined();

      // the missing checkout completion arrives: it maps the customer and the parked invoice applies by itself
      const completion = checkoutSession({
        mode: "payment",
        customer: lateCustomer,
        paymentStatus: "paid",
        paymentIntent: uniqueStripeId("pi"),
        amountTotal: 1_000,
        metadata: { userId: users.customer, pack: "starter" },
        clientReferenceId: users.customer,
      });
      expect(await send(base, officialEvent("checkout.session.completed", completion))).toEqual({ status: 200, outcome: "pack_granted" });
      expect(JSON.parse((await ops(dynamoPort, {}, "events", "show", beforeCheckout.id)).out.join("\n"))).toMatchObject({
        status: "resolved",
        outcome: "allowance_granted",
        reason: "unknown_customer",
      });

      // the price is not configured yet: a replay leaves them parked
      const early = await ops(dynamoPort, {}, "events", "replay", "--all", "--reason", "unknown_price");
      expect(early.code).toBe(1);
      expect(early.out.at(-1)).toBe("2 replayed, 2 still parked");
      expect(await balance(base, users.price)).toBe(10_000);
      expect(await balance(base, users.older)).toBe(10_000);
      expect(await balance(base, users.customer)).toBe(10_000 + 50_000 + 100_000);
      expect(await balance(base, users.field)).toBe(10_000 + 100_000);
    });

    // the price configured, the stack restarted on the same data folder
    const configured = { STRIPE_PRICE_PLUS_MONTHLY: NEW_PRICE };
    await run(configured, async (base, dynamoPort) => {
      // the pack session names no pack: nothing can apply it; the operator grants by hand and dismisses it
      expect((await ops(dynamoPort, configured, "grant", users.pack, "50000", "--key", `pack-${packSession.id}`, "--reason", "starter pack, session without metadata.pack", "--bucket", "purchased")).code).toBe(0);
      expect((await ops(dynamoPort, configured, "events", "dismiss", packless.id, "--reason", "granted by hand (ops grant)")).code).toBe(0);

      const replayed = await ops(dynamoPort, configured, "events", "replay", "--all");
      expect(replayed.code).toBe(0);
      expect(replayed.out).toEqual(expect.arrayContaining([`${unknownPrice.id} resolved: allowance_granted`, `${olderShape.id} resolved: allowance_granted`]));
      const after = [await balance(base, users.price), await balance(base, users.older), await balance(base, users.pack), await balance(base, users.customer), await balance(base, users.field)];
      expect(after).toEqual([50_000, 50_000, 60_000, 160_000, 110_000]);

      // a second replay, and Stripe's redeliveries, change nothing
      const again = await ops(dynamoPort, configured, "events", "replay", "--all");
      expect(again.out.at(-1)).toBe("0 replayed, 0 still parked");
      for (const event of [unknownPrice, olderShape, beforeCheckout, noDecisionField]) expect((await send(base, event)).outcome).toBe("duplicate");
      expect(await send(base, packless)).toEqual({ status: 200, outcome: "parked_unknown_pack" });
      expect(await balance(base, users.pack)).toBe(60_000);
      expect([await balance(base, users.price), await balance(base, users.older), await balance(base, users.customer), await balance(base, users.field)]).toEqual([50_000, 50_000, 160_000, 110_000]);
      const listed = await ops(dynamoPort, configured, "events", "list", "--all");
      expect(listed.out.find((line) => line.startsWith(packless.id))).toMatch(/unknown_pack\s+dismissed/);
      expect((await ops(dynamoPort, configured, "audit", "--all")).code).toBe(0);
    });
  }, 180_000);
});

describe("npm start: a signal during start-up", () => {
  const javaOn = (dynamoPort: number) =>
    spawnSync("pgrep", ["-f", `DynamoDBLocal.jar.*-port ${dynamoPort}`], { encoding: "utf8" }).stdout.trim();

  it.each(["SIGTERM", "SIGINT"] as const)("%s before the server listens still stops DynamoDB Local (no orphan Java)", async (signal) => {
    const dynamoPort = await findFreePort();
    const stack = startLocalStack({ PORT: String(await findFreePort()), DYNAMODB_LOCAL_PORT: String(dynamoPort) });
    // the moment Java exists: DynamoDB Local is still booting and nothing listens yet
    await until(() => javaOn(dynamoPort) !== "" || stack.child.exitCode !== null, "DynamoDB Local's Java process", 30_000);
    stack.child.kill(signal);
    expect(await exited(stack.child)).toBe(0);
    expect(stack.output()).not.toContain("creditgate is running");
    expect(stack.output()).toContain("creditgate stopped.");
    expect(javaOn(dynamoPort)).toBe("");
    expect(await portOpen(dynamoPort)).toBe(false);
  }, 60_000);
});

describe("npm start: clear messages instead of stack traces", () => {
  it("names a port that is already in use", async () => {
    const blocker = createServer().listen(0, "127.0.0.1");
    await new Promise((resolve) => blocker.once("listening", resolve));
    const taken = (blocker.address() as { port: number }).port;
    const stack = startLocalStack({ PORT: String(taken), DYNAMODB_LOCAL_PORT: String(await findFreePort()) });
    expect(await exited(stack.child)).toBe(1);
    expect(stack.errors()).toContain(`port ${taken} is already in use`);
    expect(stack.errors()).not.toMatch(/\n\s+at /); // no stack trace
    blocker.close();
  }, 60_000);

  it("says how to install Java when it is missing", async () => {
    const stack = startLocalStack({ PATH: "/nonexistent", PORT: String(await findFreePort()), DYNAMODB_LOCAL_PORT: String(await findFreePort()) });
    expect(await exited(stack.child)).toBe(1);
    expect(stack.errors()).toContain("Java was not found");
    expect(stack.errors()).toContain("apt-get install -y openjdk-17-jre-headless");
  }, 60_000);
});
