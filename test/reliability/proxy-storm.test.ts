import { decode, encode } from "gpt-tokenizer/encoding/o200k_base";
import OpenAI from "openai";
import { afterAll, describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { parseChatRequest, promptText } from "../../lib/proxy/chat-request.js";
import { estimatedOutputTokens, promptTokenBound } from "../../lib/proxy/token-bound.js";
import { SONNET, uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { useProxyFixture } from "../helpers/proxy.js";
import { userToken } from "../helpers/tokens.js";
import { modelCost, opsAuditAll, recordOutcomeOf, recordSection } from "./harness.js";

/**
 * Proxy storm: 100 streamed chats at once, through the official `openai` SDK, on one balance that
 * affords 20 of them. Exactly 20 may reach the provider; the other 80 get 402 before it is called.
 * Of the 20, some clients abort mid-stream (charged the provider's reported usage: the proxy reads
 * on) and some streams are cut by the provider (charged the documented estimate). Every charge is
 * checked against an independent cost model (harness.ts `modelCost`), and `ops audit --all` must
 * find the table clean.
 */
captureLogs();

const fx = useProxyFixture();
afterAll(() => fx.close());

const CHATS = 100;
const AFFORDABLE = 20;
const MAX_TOKENS = 30_000;
/**
 * Every admitted stream waits for its first token until all the refusals are in (or this long,
 * after which a count above 20 fails the test): so every authorize is decided while the 20 holds
 * are open, however slow the machine.
 */
const BARRIER_TIMEOUT_MS = 30_000;
const REPLY = Array.from({ length: 30 }, (_, index) => `token${index}`).join(" ");

/** of the admitted streams: every 5th the provider cuts (by arrival), and the first ABORTS others their clients abort */
const ABORTS = 4;

recordOutcomeOf("proxy-storm");

describe("proxy storm", () => {
  it(`${CHATS} concurrent streams on a balance for ${AFFORDABLE}: exactly ${AFFORDABLE} reach the provider, each charged by the policy, audit clean`, async () => {
    const userId = uniqueUser("proxy-storm");
    const body = (index: number) => ({ model: SONNET, messages: [{ role: "user" as const, content: `chat ${index}` }], max_tokens: MAX_TOKENS });
    // every body has the same prompt bound (the same count of tokens): one hold size for all
    const holds = Array.from({ length: CHATS }, (_, index) =>
      modelCost(SONNET, promptTokenBound(promptText(parseChatRequest(JSON.stringify(body(index))).request), SONNET), MAX_TOKENS),
    );
    expect(new Set(holds).size).toBe(1);
    const hold = holds[0] as number;
    await fx.setBalance(userId, AFFORDABLE * hold + hold - 1);

    const callsBefore = fx.upstream.calls.length;
    let refusals = 0;
    let openBarrier: () => void = () => undefined;
    const barrier = new Promise<void>((resolve) => {
      openBarrier = resolve;
      setTimeout(resolve, BARRIER_TIMEOUT_MS).unref();
    });
    const cut = new Set<number>();
    const aborted = new Set<number>();
    fx.upstream.scenario((request) => {
      const index = Number(String((request.messages as { content: string }[])[0]?.content).split(" ")[1]);
      const cutThis = (fx.upstream.calls.length - callsBefore) % 5 === 2;
      if (cutThis) cut.add(index);
      return { reply: REPLY, startWhen: barrier, tokenDelayMs: 3, ...(cutThis ? { cutAfterChunks: 6 } : {}) };
    });
    const token = await userToken(userId);
    const started = Date.now();
    const refusedAt: number[] = [];
    const outcomes = await Promise.all(
      Array.from({ length: CHATS }, async (_, index) => {
        const openai = new OpenAI({ apiKey: token, baseURL: fx.baseUrl, maxRetries: 0, timeout: 60_000 });
        const controller = new AbortController();
        try {
          const stream = await openai.chat.completions.create(
            { ...body(index), stream: true },
            { signal: controller.signal, headers: { "X-Request-Id": `storm-${index}` } },
          );
          // the provider has answered (its headers came with its first token): cut or not is decided
          if (!cut.has(index) && aborted.size < ABORTS) aborted.add(index);
          let seen = "";
          try {
            for await (const chunk of stream) {
              seen += chunk.choices[0]?.delta?.content ?? "";
              if (aborted.has(index) && seen.split(" ").length >= 4) controller.abort();
            }
          } catch (error) {
            // a cut stream ends with the proxy's error event, which the SDK raises
            return { index, admitted: true, seen, error: (error as Error).message };
          }
          return { index, admitted: true, seen };
        } catch (error) {
          refusedAt.push(Date.now() - started);
          refusals += 1;
          if (refusals === CHATS - AFFORDABLE) openBarrier();
          return { index, admitted: false, status: (error as { status?: number }).status, seen: "" };
        }
      }),
    );

    const admitted = outcomes.filter((outcome) => outcome.admitted);
    const calls = fx.upstream.calls.slice(callsBefore);
    // wait for every admitted call to settle (aborted ones finish reading the provider after the client left)
    const settles = async () => (await fx.ledger.deps.store.allEntries(userId)).filter((entry) => entry.reason === "settle");
    await expect.poll(async () => (await settles()).length, { timeout: 30_000, interval: 250 }).toBe(Math.min(AFFORDABLE, calls.length));

    const entries = new Map((await settles()).map((entry) => [String(entry.refs.requestId), entry]));
    const expected: number[] = [];
    const charged: number[] = [];
    const policy: { index: string; usage: unknown; want: string; streamed?: string; inputTokens?: unknown }[] = [];
    for (const call of calls) {
      const index = String((call.body.messages as { content: string }[])[0]?.content).split(" ")[1] as string;
      const entry = entries.get(`proxy:storm-${index}`);
      if (cut.has(Number(index))) {
        // the provider broke off after 6 tokens: charged the prompt as held and the streamed text as counted
        const streamed = decode(encode(REPLY).slice(0, 6));
        policy.push({ index, usage: entry?.refs.usage, want: "estimated", streamed, inputTokens: entry?.refs.inputTokens });
        expected.push(modelCost(SONNET, promptTokenBound(promptText(parseChatRequest(JSON.stringify(body(Number(index)))).request), SONNET), estimatedOutputTokens(streamed, SONNET, MAX_TOKENS)));
      } else {
        // complete, or aborted by its client: the proxy read the provider to the end and charged its usage
        policy.push({ index, usage: entry?.refs.usage, want: "reported" });
        const usage = call.usage as { prompt_tokens: number; completion_tokens: number };
        expected.push(modelCost(SONNET, usage.prompt_tokens, usage.completion_tokens));
      }
      charged.push(-(entry?.amount ?? 0));
    }
    const audit = await auditAccount(fx.ledger.deps, userId);
    const openHolds = Object.keys((await fx.ledger.deps.store.getAccount(userId))?.holds ?? {});
    const ops = await opsAuditAll(fx.ledger.tableName);
    const refusedOtherwise = outcomes.filter((outcome) => !outcome.admitted && outcome.status !== 402).length;
    const overcharged = charged.reduce((sum, amount, i) => sum + Math.max(0, amount - (expected[i] as number)), 0);
    const undercharged = charged.reduce((sum, amount, i) => sum + Math.max(0, (expected[i] as number) - amount), 0);
    recordSection({
      section: "proxy-storm",
      order: 8,
      wallMs: Date.now() - started,
      counts: { chats: CHATS, affordable: AFFORDABLE, admitted: admitted.length, reachedProvider: calls.length, aborted: aborted.size, cut: cut.size, refusedOtherwise },
      rows: [
        {
          check: "Proxy storm (proxy over HTTP, official openai SDK, loopback provider)",
          volume:
            `${CHATS} concurrent streamed chats on a balance for ${AFFORDABLE}: ${calls.length} reached the provider, ${CHATS - admitted.length} refused before it; ` +
            `${aborted.size} aborted mid-stream by their clients (charged the provider's usage), ${cut.size} cut by the provider (charged the estimate)`,
          drift: (audit.ok ? 0 : 1) + (ops.code === 0 ? 0 : 1),
          creditsLost: overcharged,
          doubleGrants: undercharged,
          other: Math.max(0, calls.length - AFFORDABLE) + refusedOtherwise + openHolds.length,
          otherLabel: "calls beyond the balance that reached the provider, refusals other than 402, holds left open",
        },
      ],
    });

    expect(admitted).toHaveLength(AFFORDABLE);
    expect(refusedOtherwise).toBe(0);
    // every refusal was decided while the 20 holds were all still open (the barrier: no token, so no settle, before)
    expect(Math.max(...refusedAt)).toBeLessThan(BARRIER_TIMEOUT_MS);
    expect(calls).toHaveLength(AFFORDABLE);
    for (const { index, usage, want, streamed, inputTokens } of policy) {
      expect(usage, `chat ${index}`).toBe(want);
      if (streamed === undefined) continue;
      expect(outcomes[Number(index)]?.seen).toBe(streamed);
      expect(inputTokens).toBe(promptTokenBound(promptText(parseChatRequest(JSON.stringify(body(Number(index)))).request), SONNET));
    }
    expect(cut.size).toBe(4);
    expect(aborted.size).toBe(ABORTS);
    expect([...aborted].every((index) => (outcomes[index]?.seen.length ?? 0) < REPLY.length)).toBe(true);
    expect(charged).toEqual(expected);
    expect(audit.ok, audit.problems.join("; ")).toBe(true);
    expect(openHolds).toEqual([]);
    expect(ops.code, [...ops.out, ...ops.err].join("\n")).toBe(0);
  }, 120_000);
});
