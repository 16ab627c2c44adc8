import { describe, expect, it } from "vitest";
import { loadConfig } from "../../lib/config.js";
import { buildAppDeps, dynamoClient } from "../../lib/runtime.js";

const env = { TABLE_NAME: "creditgate-test", AUTH_JWT_SECRET: "s".repeat(32), APP_URL: "https://app.example.com/welcome" };

describe("buildAppDeps", () => {
  it("wires the ledger from config: rate limit, hold TTL, and the CORS origin from APP_URL", () => {
    const deps = buildAppDeps(loadConfig({ ...env, AUTHORIZE_RATE_LIMIT_PER_MINUTE: "0", HOLD_TTL_SECONDS: "300" }));
    expect(deps.ledger.authorizeRateLimitPerMinute).toBe(0);
    expect(deps.ledger.holdTtlMs).toBe(300_000);
    expect(deps.corsOrigin).toBe("https://app.example.com");
    expect(buildAppDeps(loadConfig(env)).ledger.authorizeRateLimitPerMinute).toBe(600);
  });

  it("points the DynamoDB client at DYNAMODB_ENDPOINT with a local region", async () => {
    const client = dynamoClient(loadConfig({ ...env, DYNAMODB_ENDPOINT: "http://127.0.0.1:8000" }));
    expect(await client.config.region()).toBe("local");
    const endpoint = await client.config.endpoint?.();
    expect(endpoint?.hostname).toBe("127.0.0.1");
    expect(endpoint?.port).toBe(8000);
    client.destroy();
  });
});
