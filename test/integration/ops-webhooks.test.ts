import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { runOps } from "../../infra/ops/cli.js";
import { grantCredits } from "../../lib/ledger/index.js";
import { type EventsPipeline, eventually, startEventsPipeline } from "../helpers/events-pipeline.js";
import { ledgerFixture } from "../helpers/ledger.js";
import { newWebhookSecret, startWebhookReceiver, type WebhookReceiver } from "../helpers/webhook-receiver.js";

/** `npm run ops -- webhooks failed|redrive|send-test` on the pipeline's SQS stand-in. */
let fx: Awaited<ReturnType<typeof ledgerFixture>>;
let pipeline: EventsPipeline;
let receiver: WebhookReceiver;
let failing = true;
const secret = newWebhookSecret();

beforeAll(async () => {
  fx = await ledgerFixture({}, { stream: true });
  receiver = await startWebhookReceiver({ secret, respond: () => (failing ? 500 : 204) });
  pipeline = await startEventsPipeline({ tableName: fx.tableName, endpoint: { url: receiver.url, secret }, env: { WEBHOOK_GIVE_UP_AFTER_SECONDS: "10" } });
});
afterAll(async () => {
  await pipeline?.stop();
  await receiver?.stop();
});

async function ops(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const env = {
    TABLE_NAME: fx.tableName,
    DYNAMODB_ENDPOINT: inject("dynamoEndpoint"),
    SQS_ENDPOINT: pipeline.sqs.endpoint,
    WEBHOOK_QUEUE_URL: pipeline.queueUrl,
    WEBHOOK_DLQ_URL: pipeline.dlqUrl,
    APP_WEBHOOK_URL: receiver.url,
    APP_WEBHOOK_SECRET: secret,
  };
  const code = await runOps(argv, env, { out: (line) => out.push(line), err: (line) => err.push(line) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

describe("ops webhooks", () => {
  it("lists what the DLQ holds by event, redrives one, then all; each is then delivered under its id", async () => {
    for (const key of ["a", "b", "c"]) {
      await grantCredits(fx.deps, { userId: "ops-wh", key: `admin#${key}`, amount: 10, bucket: "purchased", reason: "admin" });
    }
    await eventually(async () => (await pipeline.depth(pipeline.dlqUrl)) === 3, "three dead-lettered events", 40_000);

    const failed = await ops("webhooks", "failed");
    expect(failed.code).toBe(0);
    const lines = failed.out.split("\n");
    expect(lines).toHaveLength(3);
    for (const line of lines) expect(line).toMatch(/^evt_[0-9a-f]{32}\s+credits\.granted\s+user=ops-wh\s+seq=\d+\s+attempts=\d+.*last error: HTTP 500/);
    expect(failed.err).toContain("3 event(s) in the dead-letter queue: credits.granted 3");
    expect(await pipeline.depth(pipeline.dlqUrl)).toBe(3); // listing leaves them in place

    failing = false;
    const first = (lines[0] as string).split(/\s+/)[0] as string;
    expect((await ops("webhooks", "redrive", first)).code).toBe(0);
    await eventually(() => receiver.accepted.has(first), "the redriven event");
    expect(await pipeline.depth(pipeline.dlqUrl)).toBe(2);

    expect((await ops("webhooks", "redrive", "evt_nothere")).code).toBe(1);
    expect((await ops("webhooks", "redrive")).code).toBe(2);
    const all = await ops("webhooks", "redrive", "--all");
    expect(all.err).toContain("2 event(s) back on the delivery queue");
    await eventually(() => receiver.accepted.size === 3, "every redriven event");
    expect(new Set(lines.map((line) => line.split(/\s+/)[0]))).toEqual(new Set(receiver.accepted.keys()));
    expect(await pipeline.depth(pipeline.dlqUrl)).toBe(0);
  });

  it("send-test posts one signed webhook.test event the receiver verifies", async () => {
    const result = await ops("webhooks", "send-test");
    expect(result.code).toBe(0);
    expect(result.out).toMatch(/accepted evt_test_\w+ \(HTTP 204\)/);
    expect([...receiver.accepted.values()].some((event) => event.type === "webhook.test")).toBe(true);
    expect(receiver.invalid).toBe(0);
  });
});
