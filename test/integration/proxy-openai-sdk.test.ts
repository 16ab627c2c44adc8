import OpenAI from "openai";
import { afterAll, describe, expect, it } from "vitest";
import { auditAccount, getBalance } from "../../lib/ledger/index.js";
import { SONNET, uniqueUser } from "../helpers/ledger.js";
import { priced, useProxyFixture } from "../helpers/proxy.js";
import { userToken } from "../helpers/tokens.js";

/**
 * The proxy driven by the official `openai` SDK (a client nobody here wrote), against the loopback
 * provider stand-in: what the SDK sees, and what the ledger charged for it.
 */
const fx = useProxyFixture();
afterAll(() => fx.close());

async function clientFor(userId: string) {
  return new OpenAI({ apiKey: await userToken(userId), baseURL: fx.baseUrl, maxRetries: 0 });
}

async function settleEntries(userId: string) {
  const entries = await fx.ledger.deps.store.allEntries(userId);
  return entries.filter((entry) => entry.reason === "settle");
}

describe("the openai SDK through the proxy", () => {
  it("streams with for await, and the charge is the upstream's usage priced by the catalog", async () => {
    const userId = uniqueUser("sdk-stream");
    const openai = await clientFor(userId);
    fx.upstream.scenario({ reply: "Streaming through creditgate, one token at a time." });
    const stream = await openai.chat.completions.create({
      model: SONNET,
      messages: [{ role: "user", content: "Say something." }],
      stream: true,
      max_tokens: 200,
    });
    let text = "";
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) {
      chunks.push(chunk);
      text += chunk.choices[0]?.delta?.content ?? "";
    }
    expect(text).toBe("Streaming through creditgate, one token at a time.");
    // the client did not ask for usage: no usage chunk and no usage field reach it
    expect(chunks.every((chunk) => chunk.usage === undefined && chunk.choices.length > 0)).toBe(true);
    const call = fx.upstream.calls.at(-1);
    expect(call?.body.stream_options).toEqual({ include_usage: true });
    const [settle] = await settleEntries(userId);
    expect(settle?.amount).toBe(-priced(SONNET, call?.usage as { prompt_tokens: number; completion_tokens: number }));
    expect(settle?.refs.usage).toBe("reported");
    expect((await auditAccount(fx.ledger.deps, userId)).ok).toBe(true);
  });

  it("passes the usage chunk on when the client asked for it", async () => {
    const userId = uniqueUser("sdk-usage");
    const openai = await clientFor(userId);
    fx.upstream.scenario({ reply: "With usage." });
    const stream = await openai.chat.completions.create({
      model: SONNET,
      messages: [{ role: "user", content: "Count me." }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) usage = chunk.usage ?? usage;
    const call = fx.upstream.calls.at(-1);
    expect(usage?.prompt_tokens).toBe(call?.usage?.prompt_tokens);
    expect(usage?.completion_tokens).toBe(call?.usage?.completion_tokens);
    // no output limit given: the configured default was written upstream, and held
    expect(call?.body.max_tokens).toBe(fx.deps.defaultMaxOutputTokens);
    const [settle] = await settleEntries(userId);
    expect(settle?.refs.reserved).toBeGreaterThanOrEqual(Math.round((fx.deps.defaultMaxOutputTokens * 15) / 1000));
    expect(settle?.amount).toBe(-priced(SONNET, usage as OpenAI.CompletionUsage));
  });

  it("answers a non-streaming call whole and charges its usage", async () => {
    const userId = uniqueUser("sdk-whole");
    const openai = await clientFor(userId);
    fx.upstream.scenario({ reply: "A whole answer.", cachedTokens: 5, reasoningTokens: 7 });
    const completion = await openai.chat.completions.create({
      model: SONNET,
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Answer whole." },
      ],
      max_completion_tokens: 300,
    });
    expect(completion.choices[0]?.message.content).toBe("A whole answer.");
    expect(completion.usage?.completion_tokens_details?.reasoning_tokens).toBe(7);
    const [settle] = await settleEntries(userId);
    expect(settle?.amount).toBe(-priced(SONNET, completion.usage as OpenAI.CompletionUsage));
    expect(settle?.refs).toMatchObject({ usage: "reported", cachedInputTokens: 5, reasoningTokens: 7 });
  });

  it("aborting mid-stream still charges the whole call: the proxy reads the upstream to its end", async () => {
    const userId = uniqueUser("sdk-abort");
    const openai = await clientFor(userId);
    const reply = Array.from({ length: 40 }, (_, index) => `word${index}`).join(" ");
    fx.upstream.scenario({ reply, tokenDelayMs: 5 });
    const controller = new AbortController();
    const stream = await openai.chat.completions.create(
      { model: SONNET, messages: [{ role: "user", content: "Talk for a while." }], stream: true },
      { signal: controller.signal },
    );
    let seen = 0;
    // the SDK ends the iteration when its signal aborts (and the connection with it); chunks it had
    // already read in the same network read may still be yielded, so the loop stops itself too
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta?.content) seen += 1;
      if (seen === 3) {
        controller.abort();
        break;
      }
    }
    expect(seen).toBe(3);
    const call = fx.upstream.calls.at(-1);
    // settled after the upstream finished, with its reported usage
    await expect.poll(async () => (await settleEntries(userId)).length, { timeout: 10_000 }).toBe(1);
    const [settle] = await settleEntries(userId);
    expect(call?.clientClosed).toBe(false);
    expect(call?.chunks).toBe(80); // the reply is 80 tokens: every one was produced and read
    expect(settle?.amount).toBe(-priced(SONNET, call?.usage as { prompt_tokens: number; completion_tokens: number }));
    expect(settle?.refs.usage).toBe("reported");
    expect(Object.keys((await fx.ledger.deps.store.getAccount(userId))?.holds ?? {})).toEqual([]);
  });

  it("refuses an unaffordable call with 402 before the upstream is called", async () => {
    const userId = uniqueUser("sdk-poor");
    await fx.setBalance(userId, 3);
    const openai = await clientFor(userId);
    const before = fx.upstream.calls.length;
    const error = await openai.chat.completions
      .create({ model: SONNET, messages: [{ role: "user", content: "Too dear." }], max_tokens: 1000 })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(402);
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe("insufficient_credits");
    expect(fx.upstream.calls.length).toBe(before);
    expect((await getBalance(fx.ledger.deps, userId)).balance).toBe(3);
  });

  it("lists the catalog models", async () => {
    const openai = await clientFor(uniqueUser("sdk-models"));
    const ids: string[] = [];
    for await (const model of openai.models.list()) ids.push(model.id);
    expect(ids).toContain(SONNET);
    expect(ids).toContain("openai/gpt-5.2");
  });
});
