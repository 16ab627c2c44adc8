import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findFreePort } from "../../infra/local/dynamodb-local.js";
import { startLocalStack, stopLocalStack, until } from "../helpers/e2e.js";
import { webhookBodyErrors } from "../helpers/openapi.js";
import { WEBHOOK_SECRET } from "../helpers/stripe-events.js";
import { serviceToken, TEST_SECRET } from "../helpers/tokens.js";
import { newWebhookSecret, type ReceivedEvent, startWebhookReceiver, type WebhookReceiver } from "../helpers/webhook-receiver.js";

/**
 * `npm start` with outgoing webhooks to a receiver on 127.0.0.1 that verifies every delivery with
 * the standardwebhooks library: a user chats down through low and depleted, buys a pack
 * (recovered, granted), upgrades (plan.changed) — exactly those events, once each, in seq order.
 */
const secret = newWebhookSecret();
let receiver: WebhookReceiver;
let stack: ReturnType<typeof startLocalStack>;
let base: string;

beforeAll(async () => {
  receiver = await startWebhookReceiver({ secret });
  const port = await findFreePort();
  base = `http://127.0.0.1:${port}`;
  stack = startLocalStack({
    PORT: String(port),
    DYNAMODB_LOCAL_PORT: String(await findFreePort()),
    AUTH_JWT_SECRET: TEST_SECRET,
    STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
    APP_WEBHOOK_URL: receiver.url,
    APP_WEBHOOK_SECRET: secret,
  });
  await until(() => stack.output().includes("Ctrl-C stops everything.") || stack.child.exitCode !== null, "the start banner");
  expect(stack.child.exitCode, stack.errors()).toBeNull();
}, 120_000);

afterAll(async () => {
  if (stack) await stopLocalStack(stack.child);
  await receiver?.stop();
}, 30_000);

async function gate(path: string, body: unknown): Promise<Record<string, unknown>> {
  const response = await fetch(`${base}/v1/gate/${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${await serviceToken()}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(response.status, await response.clone().text()).toBe(200);
  return (await response.json()) as Record<string, unknown>;
}

/** A chat whose reservation is exactly its cost (maxOutputTokens = outputTokens): Sonnet, 15 credits per 1k output tokens. */
async function chat(userId: string, requestId: string, outputTokens: number): Promise<void> {
  const hold = await gate("authorize", { userId, requestId, model: "anthropic/claude-sonnet-4.5", inputTokens: 0, maxOutputTokens: outputTokens });
  await gate("settle", { holdId: hold.holdId, inputTokens: 0, outputTokens });
}

function stripeEvent(...args: string[]): string {
  const run = spawnSync(process.execPath, ["--import", "tsx", "infra/local/stripe-event.ts", ...args, "--url", base], {
    encoding: "utf8",
    env: { ...process.env, STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET },
    timeout: 60_000,
  });
  expect(run.status, run.stderr).toBe(0);
  return run.stdout;
}

describe("webhooks from npm start", () => {
  it("chats down through low and depleted, buys a pack, upgrades: exactly the expected events, once each, in seq order", async () => {
    const userId = `e2e-wh-${process.pid}`;
    // signup: 10 000 credits on free (low below 2 000); 1 500 a chat
    for (let index = 1; index <= 6; index++) await chat(userId, `c${index}`, 100_000); // 10 000 → 1 000: low at the 6th (seq 6)
    await chat(userId, "c7", 66_667); // 1 000 → 0: depleted (seq 7)
    expect(stripeEvent("checkout.session.completed", "--user", userId, "--pack", "starter")).toMatch(/pack_granted/); // seq 9: recovered, granted
    expect(stripeEvent("customer.subscription.created", "--user", userId, "--plan", "pro", "--interval", "month", "--status", "active")).toMatch(/→ 200/);

    const expected = [
      { type: "credits.low", seq: 6 },
      { type: "credits.depleted", seq: 7 },
      // signup and 7 settles are seqs 1–8; the pack's entry is seq 9, the plan change writes no entry
      { type: "credits.granted", seq: 9 },
      { type: "credits.recovered", seq: 9 },
      { type: "plan.changed", seq: 9 },
    ];
    await until(() => receiver.accepted.size >= expected.length, `${expected.length} events`, 30_000);
    await new Promise((done) => setTimeout(done, 2_000)); // anything extra or repeated would arrive by now
    const events = [...receiver.accepted.values()].filter((event) => event.data.userId === userId);
    const ordered = [...events].sort((a, b) => a.data.seq - b.data.seq || Number(BigInt(a.data.position) - BigInt(b.data.position)));
    const bySeq = (list: { type: string; seq: number }[]) => list.map(({ type, seq }) => `${seq} ${type}`).sort();
    expect(bySeq(ordered.map((event) => ({ type: event.type, seq: event.data.seq })))).toEqual(bySeq(expected));
    // in seq order per user: the arrival order may differ, the seq (then position) orders them
    expect(ordered.map((event) => event.data.seq)).toEqual([...ordered.map((event) => event.data.seq)].sort((a, b) => a - b));
    expect(receiver.deliveries.filter((event) => event.data.userId === userId)).toHaveLength(expected.length); // once each
    expect(receiver.invalid).toBe(0);
    // each body is what the OpenAPI document's `webhooks` says of its type
    for (const event of events) expect(webhookBodyErrors(event), event.type).toEqual([]);
    const of = (type: string) => events.find((event) => event.type === type) as ReceivedEvent;
    expect(of("credits.granted").data).toMatchObject({ reason: "pack", amount: 50_000 });
    expect(of("plan.changed").data).toMatchObject({ from: { plan: "free", interval: "month" }, to: { plan: "pro", interval: "month" } });
    expect(of("credits.low").data).toMatchObject({ available: 1_000, threshold: 2_000, plan: "free" });
  });
});
