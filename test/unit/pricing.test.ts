import { describe, expect, it } from "vitest";
import { UnknownModelError, ValidationError } from "../../lib/errors.js";
import { costOfCall, MAX_INPUT_TOKENS } from "../../lib/pricing.js";

describe("costOfCall", () => {
  it("prices small-tier models at (3, 15) per 1K tokens", () => {
    expect(costOfCall("anthropic/claude-sonnet-4.5", 1000, 1000)).toBe(18);
    expect(costOfCall("openai/gpt-5.2", 2000, 500)).toBe(6 + 8); // 7.5 rounds to 8
  });

  it("prices the large tier at (15, 75) per 1K tokens", () => {
    expect(costOfCall("anthropic/claude-opus-4.5", 1000, 1000)).toBe(90);
  });

  it("rounds each side separately and charges at least 1 credit", () => {
    expect(costOfCall("anthropic/claude-sonnet-4.5", 100, 10)).toBe(1); // 0.3 + 0.15 both round to 0
    expect(costOfCall("anthropic/claude-sonnet-4.5", 0, 0)).toBe(1);
    expect(costOfCall("anthropic/claude-sonnet-4.5", 167, 34)).toBe(1 + 1);
  });

  it("refuses unknown models instead of guessing a rate", () => {
    expect(() => costOfCall("acme/gpt-free", 10, 10)).toThrow(UnknownModelError);
    expect(() => costOfCall("__proto__", 10, 10)).toThrow(UnknownModelError);
  });

  it("refuses negative, fractional and absurd token counts, naming the field", () => {
    expect(() => costOfCall("openai/gpt-5.2", -1, 0)).toThrow(ValidationError);
    expect(() => costOfCall("openai/gpt-5.2", 1.5, 0)).toThrow(/inputTokens/);
    expect(() => costOfCall("openai/gpt-5.2", 1, 10, "maxOutputTokens")).not.toThrow();
    expect(() => costOfCall("openai/gpt-5.2", 1, -10, "maxOutputTokens")).toThrow(/maxOutputTokens/);
    expect(() => costOfCall("openai/gpt-5.2", MAX_INPUT_TOKENS + 1, 0)).toThrow(/at most/);
    expect(() => costOfCall("openai/gpt-5.2", Number.NaN, 0)).toThrow(ValidationError);
  });
});
