import { describe, expect, it } from "vitest";
import { catalog, PACK_IDS, PLAN_IDS } from "../../lib/catalog.js";
import { ConfigError, loadConfig, packPriceVar, planPriceVar, STRIPE_PRICE_VARS } from "../../lib/config.js";

const valid = {
  TABLE_NAME: "creditgate-prod",
  AUTH_JWT_SECRET: "s".repeat(32),
  APP_URL: "https://app.example.com",
};

function problemsOf(env: Record<string, string | undefined>): string {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error("expected the config to be refused");
}

describe("loadConfig", () => {
  it("accepts the minimum and fills the defaults", () => {
    const config = loadConfig({ ...valid, UNRELATED: "ignored" });
    expect(config).toMatchObject({ ...valid, AUTHORIZE_RATE_LIMIT_PER_MINUTE: 600, HOLD_TTL_SECONDS: 900 });
    expect(config.AUTH_JWKS_URL).toBeUndefined();
    expect(config.DYNAMODB_ENDPOINT).toBeUndefined();
    expect(config).not.toHaveProperty("UNRELATED");
  });

  it("names each missing required variable", () => {
    expect(problemsOf({})).toMatch(/TABLE_NAME is required/);
    expect(problemsOf({})).toMatch(/APP_URL is required/);
    expect(problemsOf({ ...valid, TABLE_NAME: "  " })).toMatch(/TABLE_NAME is required/);
  });

  it("needs AUTH_JWT_SECRET or AUTH_JWKS_URL, and accepts either", () => {
    expect(problemsOf({ ...valid, AUTH_JWT_SECRET: undefined })).toMatch(/AUTH_JWT_SECRET or AUTH_JWKS_URL is required/);
    expect(loadConfig({ ...valid, AUTH_JWT_SECRET: undefined, AUTH_JWKS_URL: "https://idp.example.com/jwks.json" }))
      .toMatchObject({ AUTH_JWKS_URL: "https://idp.example.com/jwks.json" });
  });

  it("refuses weak secrets, bad URLs and plain-http JWKS off localhost", () => {
    expect(problemsOf({ ...valid, AUTH_JWT_SECRET: "short" })).toMatch(/AUTH_JWT_SECRET must be at least 32 characters/);
    expect(problemsOf({ ...valid, APP_URL: "app.example.com" })).toMatch(/APP_URL must be an http\(s\) URL/);
    expect(problemsOf({ ...valid, APP_URL: "javascript:alert(1)" })).toMatch(/APP_URL/);
    expect(problemsOf({ ...valid, AUTH_JWKS_URL: "http://idp.example.com/jwks" })).toMatch(/AUTH_JWKS_URL must be an https URL/);
    expect(loadConfig({ ...valid, AUTH_JWKS_URL: "http://127.0.0.1:8080/jwks" }).AUTH_JWKS_URL).toBe("http://127.0.0.1:8080/jwks");
    expect(problemsOf({ ...valid, DYNAMODB_ENDPOINT: "localhost:8000" })).toMatch(/DYNAMODB_ENDPOINT/);
  });

  it("reads whole numbers only, with bounds; 0 turns the rate limit off", () => {
    expect(loadConfig({ ...valid, AUTHORIZE_RATE_LIMIT_PER_MINUTE: "0" }).AUTHORIZE_RATE_LIMIT_PER_MINUTE).toBe(0);
    expect(loadConfig({ ...valid, AUTHORIZE_RATE_LIMIT_PER_MINUTE: "" }).AUTHORIZE_RATE_LIMIT_PER_MINUTE).toBe(600);
    expect(loadConfig({ ...valid, HOLD_TTL_SECONDS: "120" }).HOLD_TTL_SECONDS).toBe(120);
    for (const bad of ["-1", "1.5", "1e3", "ten"]) {
      expect(problemsOf({ ...valid, AUTHORIZE_RATE_LIMIT_PER_MINUTE: bad })).toMatch(/AUTHORIZE_RATE_LIMIT_PER_MINUTE must be a whole number/);
    }
    expect(problemsOf({ ...valid, HOLD_TTL_SECONDS: "5" })).toMatch(/HOLD_TTL_SECONDS/);
  });

  it("caps the sweep's parked-event retries per run: 25 by default, 0 turns them off, bounded", () => {
    expect(loadConfig({ ...valid }, "sweep").PARKED_EVENT_RETRIES_PER_SWEEP).toBe(25);
    expect(loadConfig({ ...valid, PARKED_EVENT_RETRIES_PER_SWEEP: "0" }, "sweep").PARKED_EVENT_RETRIES_PER_SWEEP).toBe(0);
    for (const bad of ["-1", "2.5", "1001"]) expect(problemsOf({ ...valid, PARKED_EVENT_RETRIES_PER_SWEEP: bad })).toMatch(/PARKED_EVENT_RETRIES_PER_SWEEP/);
  });

  it("reports every problem at once", () => {
    const message = problemsOf({ TABLE_NAME: "ok-table", HOLD_TTL_SECONDS: "x" });
    expect(message).toMatch(/APP_URL/);
    expect(message).toMatch(/AUTH_JWT_SECRET or AUTH_JWKS_URL/);
    expect(message).toMatch(/HOLD_TTL_SECONDS/);
    expect(message).not.toMatch(/TABLE_NAME/);
  });

  it("has one optional Stripe price variable per paid plan and interval and per pack", () => {
    const expected = [
      ...PLAN_IDS.flatMap((plan) => (catalog.plans[plan]?.intervals ?? []).map((interval) => planPriceVar(plan, interval))),
      ...PACK_IDS.map(packPriceVar),
    ];
    expect([...STRIPE_PRICE_VARS].sort()).toEqual(expected.sort());
    expect(loadConfig({ ...valid, STRIPE_PRICE_PRO_MONTHLY: "price_123" }).STRIPE_PRICE_PRO_MONTHLY).toBe("price_123");
    expect(problemsOf({ ...valid, STRIPE_PRICE_PACK_STARTER: "prod_123" })).toMatch(/STRIPE_PRICE_PACK_STARTER/);
  });
});
