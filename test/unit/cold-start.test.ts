import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

const VARS = ["TABLE_NAME", "AUTH_JWT_SECRET", "AUTH_JWKS_URL", "APP_URL", "DYNAMODB_ENDPOINT", "HOLD_TTL_SECONDS"];

/** A function module imported as a fresh Lambda container would: config is read at import. */
const coldStart = (name: "chat-gate" | "credits") =>
  name === "chat-gate" ? import("../../functions/chat-gate.js") : import("../../functions/credits.js");

describe("cold start", () => {
  beforeEach(() => {
    vi.resetModules();
    for (const name of VARS) vi.stubEnv(name, "");
  });
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it.each(["chat-gate", "credits"] as const)("%s fails at import, naming what is missing", async (name) => {
    vi.stubEnv("APP_URL", "https://app.example.com");
    await expect(coldStart(name)).rejects.toThrow(/TABLE_NAME is required.*AUTH_JWT_SECRET or AUTH_JWKS_URL is required/);
  });

  it("fails on a bad value, naming the variable", async () => {
    vi.stubEnv("TABLE_NAME", "t-cold");
    vi.stubEnv("AUTH_JWT_SECRET", "x".repeat(32));
    vi.stubEnv("APP_URL", "https://app.example.com");
    vi.stubEnv("HOLD_TTL_SECONDS", "soon");
    await expect(coldStart("chat-gate")).rejects.toThrow(/HOLD_TTL_SECONDS must be a whole number/);
  });

  it("exports a handler and the plain route when the config is good", async () => {
    vi.stubEnv("TABLE_NAME", "t-cold");
    vi.stubEnv("AUTH_JWT_SECRET", "x".repeat(32));
    vi.stubEnv("APP_URL", "https://app.example.com");
    const gate = await coldStart("chat-gate");
    expect(typeof gate.handler).toBe("function");
    expect(typeof gate.route).toBe("function");
  });
});
