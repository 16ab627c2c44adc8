import { DescribeTableCommand } from "@aws-sdk/client-dynamodb";
import { DescribeStreamCommand, DynamoDBStreamsClient, GetRecordsCommand, GetShardIteratorCommand, type _Record } from "@aws-sdk/client-dynamodb-streams";
import { afterAll, describe, expect, inject, it } from "vitest";
import { authorizeChat, grantCredits, releaseHold, settleChat } from "../../lib/ledger/index.js";
import { type EventsPipeline, eventually, startEventsPipeline } from "../helpers/events-pipeline.js";
import { OPUS, SONNET, useLedgerFixture } from "../helpers/ledger.js";
import { newWebhookSecret, type ReceivedEvent, startWebhookReceiver, type WebhookReceiver } from "../helpers/webhook-receiver.js";

/**
 * A storm: thousands of concurrent chats on many accounts (holds open and close, so `available`
 * flaps across the thresholds), admin top-ups in the middle, while the receiver answers 5xx and
 * then times out for a while. Checked against a model built independently: the test reads the
 * table's stream itself, chains each account's `available` from image to image (nothing missing),
 * and counts the threshold crossings with its own constants. Every expected event must arrive at
 * least once, each crossing under exactly one id, nothing unexpected. All on 127.0.0.1.
 */
const fx = useLedgerFixture({}, { stream: true });
let pipeline: EventsPipeline | undefined;
let receiver: WebhookReceiver | undefined;
afterAll(async () => {
  await pipeline?.stop();
  await receiver?.stop();
});

const ACCOUNTS = 40;
const CHATS_PER_ACCOUNT = 60;
const CONCURRENCY = 48;
/** the model's own constants: free plan, 20% of 10 000; a call costs at least 1 credit */
const FREE_LOW = 2_000;
const CHEAPEST = 1;

/** A tiny seeded generator, so a failure can be replayed. */
function random(seed: number) {
  let state = seed >>> 0;
  return () => {
    state = (state * 1_664_525 + 1_013_904_223) >>> 0;
    return state / 2 ** 32;
  };
}

async function runPool<T>(tasks: (() => Promise<T>)[], concurrency: number): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < tasks.length) {
        const task = tasks[next++] as () => Promise<T>;
        await task().catch(() => undefined); // refusals (insufficient credits, conflicts) are part of a storm
      }
    }),
  );
}

/** Every record the table's stream holds, read here (not by the code under test), oldest first. */
async function readWholeStream(tableName: string): Promise<_Record[]> {
  const endpoint = inject("dynamoEndpoint");
  const streams = new DynamoDBStreamsClient({ endpoint, region: "local", credentials: { accessKeyId: "m", secretAccessKey: "m" } });
  const table = await fx.client.send(new DescribeTableCommand({ TableName: tableName }));
  const arn = table.Table?.LatestStreamArn as string;
  const records: _Record[] = [];
  const shards = (await streams.send(new DescribeStreamCommand({ StreamArn: arn }))).StreamDescription?.Shards ?? [];
  for (const shard of shards) {
    let iterator = (await streams.send(new GetShardIteratorCommand({ StreamArn: arn, ShardId: shard.ShardId, ShardIteratorType: "TRIM_HORIZON" }))).ShardIterator;
    while (iterator) {
      const page = await streams.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 1000 }));
      records.push(...(page.Records ?? []));
      if ((page.Records ?? []).length === 0) break; // an open shard: everything up to now is read
      iterator = page.NextShardIterator;
    }
  }
  streams.destroy();
  return records.sort((a, b) => (BigInt(a.dynamodb?.SequenceNumber ?? 0) < BigInt(b.dynamodb?.SequenceNumber ?? 0) ? -1 : 1));
}

interface Expected {
  userId: string;
  type: string;
  position: string;
}

/** The model: crossings of each account's available, judged here with plain numbers. */
function expectedEvents(records: _Record[]): { expected: Expected[]; chainBreaks: string[] } {
  const expected: Expected[] = [];
  const chainBreaks: string[] = [];
  const lastAvailable = new Map<string, number>();
  for (const record of records) {
    const keys = record.dynamodb?.Keys;
    const userId = (keys?.pk?.S ?? "").slice(2);
    const sk = keys?.sk?.S ?? "";
    const position = record.dynamodb?.SequenceNumber as string;
    if (sk === "ACCOUNT" && record.dynamodb?.NewImage) {
      const after = Number(record.dynamodb.NewImage.available?.N);
      const before = record.dynamodb.OldImage ? Number(record.dynamodb.OldImage.available?.N) : undefined;
      if (before !== undefined && lastAvailable.has(userId) && lastAvailable.get(userId) !== before) chainBreaks.push(`${userId} at ${position}`);
      lastAvailable.set(userId, after);
      const from = before ?? Number.POSITIVE_INFINITY;
      if (from >= FREE_LOW && after < FREE_LOW) expected.push({ userId, type: "credits.low", position });
      if (from >= CHEAPEST && after < CHEAPEST) expected.push({ userId, type: "credits.depleted", position });
      if (from < FREE_LOW && after >= FREE_LOW) expected.push({ userId, type: "credits.recovered", position });
    } else if (sk.startsWith("E#admin#") && record.eventName === "INSERT") {
      expected.push({ userId, type: "credits.granted", position });
    }
  }
  return { expected, chainBreaks };
}

describe("webhook storm", () => {
  it("delivers every expected event at least once, each crossing under one id, nothing lost, while the endpoint fails for a while", async () => {
    const secret = newWebhookSecret();
    const started = Date.now();
    // from the first delivery on: 5xx for 6 s, then timeouts until 12 s, then healthy
    let firstDelivery: number | undefined;
    receiver = await startWebhookReceiver({
      secret,
      respond: () => {
        firstDelivery ??= Date.now();
        const elapsed = Date.now() - firstDelivery;
        if (elapsed < 6_000) return 503;
        if (elapsed < 12_000) return "timeout";
        return 204;
      },
    });
    pipeline = await startEventsPipeline({ tableName: fx.tableName, endpoint: { url: receiver.url, secret }, workers: 6 });

    const draw = random(20);
    const users = Array.from({ length: ACCOUNTS }, (_, index) => `storm-${index}`);
    const tasks: (() => Promise<unknown>)[] = [];
    for (let round = 0; round < CHATS_PER_ACCOUNT; round++) {
      for (const userId of users) {
        const requestId = `r${round}`;
        const output = Math.floor(draw() * 40_000);
        const reserve = output + Math.floor(draw() * 20_000); // holds reserve more than they spend: available flaps
        const model = draw() < 0.2 ? OPUS : SONNET;
        const release = draw() < 0.1;
        tasks.push(async () => {
          const hold = await authorizeChat(fx.deps, { userId, requestId, model, inputTokens: 500, maxOutputTokens: reserve });
          if (release) return releaseHold(fx.deps, { holdId: hold.holdId });
          return settleChat(fx.deps, { holdId: hold.holdId, inputTokens: 500, outputTokens: output });
        });
        if (round % 20 === 10 && draw() < 0.5) {
          tasks.push(() => grantCredits(fx.deps, { userId, key: `admin#top-${round}`, amount: 3_000 + Math.floor(draw() * 5_000), bucket: "purchased", reason: "admin" }));
        }
      }
    }
    await runPool(tasks, CONCURRENCY);
    const chatsDone = Date.now();

    await pipeline.events.caughtUp();
    const records = await readWholeStream(fx.tableName);
    const { expected, chainBreaks } = expectedEvents(records);
    expect(chainBreaks).toEqual([]);
    expect(expected.length).toBeGreaterThan(ACCOUNTS); // the storm crossed thresholds plenty

    const key = (userId: string, type: string, position: string) => JSON.stringify([userId, type, position]);
    const wanted = new Set(expected.map((event) => key(event.userId, event.type, event.position)));
    const accepted = () => [...(receiver as WebhookReceiver).accepted.values()];
    const deliveredKey = (event: ReceivedEvent) => key(event.data.userId, event.type, event.data.position);
    await eventually(() => accepted().filter((event) => wanted.has(deliveredKey(event))).length >= wanted.size, `${wanted.size} expected events`, 120_000);
    await new Promise((done) => setTimeout(done, 2_000));

    const events = accepted().filter((event) => event.type !== "webhook.test");
    // none lost: every expected crossing and grant arrived
    const delivered = new Map<string, string[]>();
    for (const event of events) delivered.set(deliveredKey(event), [...(delivered.get(deliveredKey(event)) ?? []), event.id]);
    expect([...wanted].filter((fact) => !delivered.has(fact))).toEqual([]);
    // nothing unexpected, and no fact under two ids
    expect([...delivered.keys()].filter((fact) => !wanted.has(fact))).toEqual([]);
    expect([...delivered.values()].filter((ids) => ids.length > 1)).toEqual([]);
    // the failures were real: deliveries were retried under the same ids
    const retried = [...(receiver?.attempts.values() ?? [])].filter((attempts) => attempts > 1).length;
    expect(retried).toBeGreaterThan(0);
    expect(receiver?.invalid).toBe(0);
    expect(await pipeline.depth(pipeline.dlqUrl)).toBe(0);
    console.log(
      `storm: ${tasks.length} operations in ${chatsDone - started} ms, ${records.length} stream records, ${wanted.size} expected events, ` +
        `${receiver?.deliveries.length} deliveries (${retried} events retried), all delivered ${Date.now() - started} ms after the start`,
    );
  }, 240_000);
});
