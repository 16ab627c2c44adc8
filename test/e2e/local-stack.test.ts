import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { connect, createServer } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findFreePort } from "../../infra/local/dynamodb-local.js";

const WEBHOOK_SECRET = "whsec_e2e_0123456789abcdefghij";
const node = process.execPath; // Node 24, as npm scripts run it

function startStack(env: Record<string, string>): { child: ChildProcess; output: () => string; errors: () => string } {
  const child = spawn(node, ["--import", "tsx", "infra/local/start.ts", "--in-memory"], {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    err += chunk.toString();
  });
  return { child, output: () => out, errors: () => err };
}

async function until(check: () => boolean, what: string, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

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
  let stack: ReturnType<typeof startStack>;

  beforeAll(async () => {
    port = await findFreePort();
    dynamoPort = await findFreePort();
    stack = startStack({
      PORT: String(port),
      DYNAMODB_LOCAL_PORT: String(dynamoPort),
      STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
      SWEEP_INTERVAL_SECONDS: "3600",
    });
    await until(() => stack.output().includes("Ctrl-C stops everything."), "the start banner");
  }, 120_000);

  afterAll(() => {
    if (stack.child.exitCode === null) stack.child.kill("SIGKILL");
  });

  it("prints a curl flow that authorizes, settles and shows the balance over HTTP", () => {
    const banner = stack.output();
    expect(banner).toContain(`creditgate is running at http://127.0.0.1:${port}`);
    const flow = banner
      .split("\n")
      .filter((line) => line.startsWith("HOLD=") || line.startsWith("curl "))
      .join("\n");
    expect(flow.split("\n")).toHaveLength(3);
    const run = spawnSync("bash", ["-c", flow], { encoding: "utf8", timeout: 30_000 });
    expect(run.status).toBe(0);
    const [holdId, settleJson, creditsJson] = run.stdout.trim().split("\n");
    expect(holdId).toMatch(/^hold_/);
    const settled = JSON.parse(settleJson as string);
    expect(settled).toMatchObject({ status: "settled", charged: 9, released: 7, balance: 10_000 - 9 });
    expect(JSON.parse(creditsJson as string)).toMatchObject({ userId: "dev-user", balance: 10_000 - 9, held: 0 });
  });

  it("takes signed Stripe events from `npm run stripe:event` and shows them in balance and history", async () => {
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
      const response = await fetch(`http://127.0.0.1:${port}${path}`, { headers: { authorization: `Bearer ${userToken}` } });
      // biome-ignore lint/suspicious/noExplicitAny: response JSON
      return { status: response.status, json: (await response.json()) as any };
    };
    const credits = await get("/v1/credits");
    expect(credits.json).toMatchObject({ balance: 10_000 - 9 + 50_000, purchased: 50_000 });
    const history = await get("/v1/credits/history");
    expect(history.json.entries.map((entry: { reason: string }) => entry.reason)).toEqual(["pack", "settle", "signup"]);
    const unknown = await get("/v1/nothing-here");
    expect(unknown.status).toBe(404);
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

describe("npm start: clear messages instead of stack traces", () => {
  it("names a port that is already in use", async () => {
    const blocker = createServer().listen(0, "127.0.0.1");
    await new Promise((resolve) => blocker.once("listening", resolve));
    const taken = (blocker.address() as { port: number }).port;
    const stack = startStack({ PORT: String(taken), DYNAMODB_LOCAL_PORT: String(await findFreePort()) });
    expect(await exited(stack.child)).toBe(1);
    expect(stack.errors()).toContain(`port ${taken} is already in use`);
    expect(stack.errors()).not.toMatch(/\n\s+at /); // no stack trace
    blocker.close();
  }, 60_000);

  it("says how to install Java when it is missing", async () => {
    const stack = startStack({ PATH: "/nonexistent", PORT: String(await findFreePort()), DYNAMODB_LOCAL_PORT: String(await findFreePort()) });
    expect(await exited(stack.child)).toBe(1);
    expect(stack.errors()).toContain("Java was not found");
    expect(stack.errors()).toContain("apt-get install -y openjdk-17-jre-headless");
  }, 60_000);
});
