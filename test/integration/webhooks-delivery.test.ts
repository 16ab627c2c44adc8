import { afterEach, describe, expect, it } from "vitest";
import { authorizeChat, grantCredits, settleChat } from "../../lib/ledger/index.js";
import { type EventsPipeline, eventually, startEventsPipeline } from "../helpers/events-pipeline.js";
import { SONNET, useLedgerFixture } from "../helpers/ledger.js";
import { newWebhookSecret, startWebhookReceiver, type WebhookReceiver } from "../helpers/webhook-receiver.js";

/**
 * The webhook pipeline end to end inside one process: ledger writes on DynamoDB Local → its
 * change stream → the consumer → the SQS stand-in → the deliverer → a receiver on 127.0.0.1 that
 * verifies each delivery with the standardwebhooks library.
 */
const fx = useLedgerFixture({}, { stream: true });
let pipeline: EventsPipeline | undefined;
let receiver: WebhookReceiver | undefined;
afterEach(async () => {
  await pipeline?.stop();
  await receiver?.stop();
  pipeline = undefined;
  receiver = undefined;
});

/** One chat: authorize `reserve`-ish, settle with `outputTokens`. Sonnet: 3/1k in, 15/1k out. */
async function chat(userId: string, requestId: string, inputTokens: number, outputTokens: number) {
  const hold = await authorizeChat(fx.deps, { userId, requestId, model: SONNET, inputTokens, maxOutputTokens: outputTokens });
  return settleChat(fx.deps, { holdId: hold.holdId, inputTokens, outputTokens });
}

describe("signed webhooks from the change stream", () => {
  it("delivers low, depleted, recovered and granted once each, verified by the receiver", async () => {
    const secret = newWebhookSecret();
    receiver = await startWebhookReceiver({ secret });
    pipeline = await startEventsPipeline({ tableName: fx.tableName, endpoint: { url: receiver.url, secret } });
    const userId = "wh-basic";
    // signup 10 000 credits; free low threshold 2 000. 100 000 output tokens cost 1 500 credits.
    for (let index = 0; index < 6; index++) await chat(userId, `r${index}`, 0, 100_000); // 10 000 → 1 000: low at the 6th
    await chat(userId, "r6", 0, 66_667); // → 0: depleted
    await grantCredits(fx.deps, { userId, key: "admin#top", amount: 5_000, bucket: "purchased", reason: "admin" }); // recovered, granted
    await eventually(() => receiver?.accepted.size === 4, "4 events");
    await new Promise((done) => setTimeout(done, 1_000));
    const events = [...(receiver?.accepted.values() ?? [])].sort((a, b) => a.data.seq - b.data.seq || Number(BigInt(a.data.position) - BigInt(b.data.position)));
    expect(events.map((event) => event.type).sort()).toEqual(["credits.depleted", "credits.granted", "credits.low", "credits.recovered"]);
    expect(receiver?.invalid).toBe(0);
    expect(receiver?.deliveries).toHaveLength(4); // nothing delivered twice
    expect(events.find((event) => event.type === "credits.granted")?.data).toMatchObject({ userId, amount: 5_000, reason: "admin" });
    expect(events.find((event) => event.type === "credits.low")?.data).toMatchObject({ userId, threshold: 2_000, plan: "free" });
    expect(await pipeline.depth(pipeline.queueUrl)).toBe(0);
  });

  it("retries a failing endpoint with backoff until it answers, under the same id", async () => {
    const secret = newWebhookSecret();
    receiver = await startWebhookReceiver({ secret, respond: (_event, attempt) => (attempt === 1 ? 503 : attempt === 2 ? "timeout" : 200) });
    pipeline = await startEventsPipeline({ tableName: fx.tableName, endpoint: { url: receiver.url, secret } });
    await grantCredits(fx.deps, { userId: "wh-retry", key: "admin#one", amount: 10, bucket: "purchased", reason: "admin" });
    await eventually(() => receiver?.accepted.size === 1, "the event after two failures", 30_000);
    const [event] = receiver?.accepted.values() ?? [];
    expect(receiver?.attempts.get(event?.id ?? "")).toBe(3);
    expect(new Set(receiver?.deliveries.map((delivery) => delivery.id)).size).toBe(1);
  });

  it("gives up after the retry window and dead-letters the event", async () => {
    const secret = newWebhookSecret();
    receiver = await startWebhookReceiver({ secret, respond: () => 500 });
    pipeline = await startEventsPipeline({ tableName: fx.tableName, endpoint: { url: receiver.url, secret }, env: { WEBHOOK_GIVE_UP_AFTER_SECONDS: "10" } });
    await grantCredits(fx.deps, { userId: "wh-dlq", key: "admin#one", amount: 10, bucket: "purchased", reason: "admin" });
    const dlqUrl = pipeline.dlqUrl;
    await eventually(async () => (await pipeline?.depth(dlqUrl)) === 1, "the dead-lettered event", 40_000);
    expect(await pipeline.depth(pipeline.queueUrl)).toBe(0);
    expect(receiver.attempts.size).toBe(1);
    expect([...receiver.attempts.values()][0]).toBeGreaterThanOrEqual(3);
  });

  it("queues nothing without an endpoint", async () => {
    pipeline = await startEventsPipeline({ tableName: fx.tableName });
    await grantCredits(fx.deps, { userId: "wh-none", key: "admin#one", amount: 10, bucket: "purchased", reason: "admin" });
    await pipeline.events.caughtUp();
    expect(await pipeline.depth(pipeline.queueUrl)).toBe(0);
  });
});
