import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateText, streamText } from "ai";
import { afterAll, describe, expect, it } from "vitest";
import { SONNET, uniqueUser } from "../helpers/ledger.js";
import { priced, useProxyFixture } from "../helpers/proxy.js";
import { userToken } from "../helpers/tokens.js";

/**
 * The proxy driven by the Vercel AI SDK (`ai` with `@ai-sdk/openai-compatible`), a second client
 * nobody here wrote: streamText and generateText, and what the ledger charged for them.
 */
const fx = useProxyFixture();
afterAll(() => fx.close());

async function providerFor(userId: string, includeUsage: boolean) {
  return createOpenAICompatible({ name: "creditgate", baseURL: fx.baseUrl, apiKey: await userToken(userId), includeUsage });
}

const settles = async (userId: string) => (await fx.ledger.deps.store.allEntries(userId)).filter((entry) => entry.reason === "settle");

describe("the Vercel AI SDK through the proxy", () => {
  it("streamText streams the reply and reports the upstream's usage; the charge is that usage priced", async () => {
    const userId = uniqueUser("ai-stream");
    const provider = await providerFor(userId, true);
    fx.upstream.scenario({ reply: "Hello from the AI SDK path.", tokenDelayMs: 2 });
    const result = streamText({ model: provider.chatModel(SONNET), prompt: "Greet me.", maxOutputTokens: 100 });
    const parts: string[] = [];
    for await (const part of result.textStream) parts.push(part);
    expect(parts.join("")).toBe("Hello from the AI SDK path.");
    expect(parts.length).toBeGreaterThan(3); // it arrived in pieces, not as one buffered answer
    const usage = await result.usage;
    const call = fx.upstream.calls.at(-1);
    expect(usage.inputTokens).toBe(call?.usage?.prompt_tokens);
    expect(usage.outputTokens).toBe(call?.usage?.completion_tokens);
    expect(call?.body.max_tokens).toBe(100);
    const [settle] = await settles(userId);
    expect(settle?.amount).toBe(-priced(SONNET, call?.usage as { prompt_tokens: number; completion_tokens: number }));
  });

  it("streamText without includeUsage still settles on the usage the proxy asked for upstream", async () => {
    const userId = uniqueUser("ai-nousage");
    const provider = await providerFor(userId, false);
    fx.upstream.scenario({ reply: "No usage asked by the client." });
    const result = streamText({ model: provider.chatModel(SONNET), prompt: "Go." });
    let text = "";
    for await (const part of result.textStream) text += part;
    expect(text).toBe("No usage asked by the client.");
    const call = fx.upstream.calls.at(-1);
    expect(call?.body.stream_options).toEqual({ include_usage: true });
    const [settle] = await settles(userId);
    expect(settle?.refs.usage).toBe("reported");
    expect(settle?.amount).toBe(-priced(SONNET, call?.usage as { prompt_tokens: number; completion_tokens: number }));
  });

  it("generateText (non-streaming) is charged by the response's usage", async () => {
    const userId = uniqueUser("ai-whole");
    const provider = await providerFor(userId, false);
    fx.upstream.scenario({ reply: "Generated whole." });
    const result = await generateText({ model: provider.chatModel("openai/gpt-5.2"), prompt: "Answer." });
    expect(result.text).toBe("Generated whole.");
    const call = fx.upstream.calls.at(-1);
    const [settle] = await settles(userId);
    expect(settle?.amount).toBe(-priced("openai/gpt-5.2", call?.usage as { prompt_tokens: number; completion_tokens: number }));
  });

  it("an unaffordable call surfaces as the SDK's API error with status 402", async () => {
    const userId = uniqueUser("ai-poor");
    await fx.setBalance(userId, 1);
    const provider = await providerFor(userId, true);
    const before = fx.upstream.calls.length;
    const error = await generateText({ model: provider.chatModel(SONNET), prompt: "Too dear.", maxOutputTokens: 2000, maxRetries: 0 }).catch(
      (caught: unknown) => caught,
    );
    expect((error as { statusCode?: number }).statusCode).toBe(402);
    expect(String((error as { responseBody?: string }).responseBody)).toContain("insufficient_credits");
    expect(fx.upstream.calls.length).toBe(before);
  });
});
