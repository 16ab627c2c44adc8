import { describe, expect, it, vi } from "vitest";
import {
  isPlaceholderSecret,
  loadSecretsIntoEnv,
  resolveSecretEnv,
  SECRET_MAX_AGE_SECONDS,
  SECRET_PLACEHOLDER_KEY,
  type SecretFetcher,
  SecretsError,
} from "../../lib/secrets.js";

const ARN = (name: string) => `arn:aws:secretsmanager:us-east-1:123456789012:secret:${name}-AbCdEf`;

/** A fake Secrets Manager: values by secret id, and a record of what was asked. */
function fakeProvider(values: Record<string, unknown>) {
  const fetch = vi.fn<SecretFetcher>(async (secretId) => {
    if (!(secretId in values)) throw new Error(`ResourceNotFoundException: ${secretId}`);
    return values[secretId];
  });
  return fetch;
}

describe("resolveSecretEnv", () => {
  it("fills each plain variable from its <NAME>_ARN, cached for the default max age", async () => {
    const fetch = fakeProvider({ [ARN("jwt")]: "j".repeat(40), [ARN("stripe")]: "sk_test_123" });
    const env = { TABLE_NAME: "t", AUTH_JWT_SECRET_ARN: ARN("jwt"), STRIPE_SECRET_KEY_ARN: ARN("stripe") };
    const resolved = await resolveSecretEnv(env, fetch);
    expect(resolved).toEqual({ ...env, AUTH_JWT_SECRET: "j".repeat(40), STRIPE_SECRET_KEY: "sk_test_123" });
    expect(fetch).toHaveBeenCalledTimes(2);
    expect(fetch).toHaveBeenCalledWith(ARN("jwt"), { maxAge: SECRET_MAX_AGE_SECONDS });
    expect(SECRET_MAX_AGE_SECONDS).toBe(300);
    // A copy: the caller decides whether to write it into process.env.
    expect(env).not.toHaveProperty("AUTH_JWT_SECRET");
  });

  it("does not fetch what is already set in plain (local runs, tests)", async () => {
    const fetch = fakeProvider({});
    const env = { AUTH_JWT_SECRET: "already-set-locally-000000000000000", AUTH_JWT_SECRET_ARN: ARN("jwt") };
    expect(await resolveSecretEnv(env, fetch)).toEqual(env);
    expect(fetch).not.toHaveBeenCalled();
  });

  it("treats a blank plain value as unset and a blank ARN as absent", async () => {
    const fetch = fakeProvider({ [ARN("hook")]: "whsec_1" });
    const resolved = await resolveSecretEnv({ STRIPE_WEBHOOK_SECRET: " ", STRIPE_WEBHOOK_SECRET_ARN: ARN("hook"), STRIPE_SECRET_KEY_ARN: "" }, fetch);
    expect(resolved.STRIPE_WEBHOOK_SECRET).toBe("whsec_1");
    expect(resolved.STRIPE_SECRET_KEY).toBeUndefined();
    expect(fetch).toHaveBeenCalledTimes(1);
  });

  it("ignores variables that are not secrets, and touches nothing without any ARN", async () => {
    const fetch = fakeProvider({});
    const env = { TABLE_NAME: "t", APP_URL_ARN: ARN("app") };
    expect(await resolveSecretEnv(env, fetch)).toEqual(env);
    expect(fetch).not.toHaveBeenCalled();
  });

  it("decodes a binary secret", async () => {
    const fetch = fakeProvider({ [ARN("stripe")]: new TextEncoder().encode("sk_test_bin") });
    expect((await resolveSecretEnv({ STRIPE_SECRET_KEY_ARN: ARN("stripe") }, fetch)).STRIPE_SECRET_KEY).toBe("sk_test_bin");
  });

  it("leaves a stack-created placeholder unset, so config reports the variable missing", async () => {
    const placeholder = JSON.stringify({ [SECRET_PLACEHOLDER_KEY]: "replace this whole value", random: "x1y2" });
    const fetch = fakeProvider({ [ARN("stripe")]: placeholder });
    const resolved = await resolveSecretEnv({ STRIPE_SECRET_KEY_ARN: ARN("stripe") }, fetch);
    expect(resolved).not.toHaveProperty("STRIPE_SECRET_KEY");
  });

  it("fails once, naming every variable it could not read and never a value", async () => {
    const fetch = fakeProvider({ [ARN("jwt")]: "", [ARN("stripe")]: "sk_live_do_not_print" });
    const attempt = resolveSecretEnv(
      { AUTH_JWT_SECRET_ARN: ARN("jwt"), STRIPE_WEBHOOK_SECRET_ARN: ARN("missing"), STRIPE_SECRET_KEY_ARN: ARN("stripe") },
      fetch,
    );
    await expect(attempt).rejects.toBeInstanceOf(SecretsError);
    const error = (await attempt.catch((e: unknown) => e)) as SecretsError;
    expect(error.problems).toEqual([
      `AUTH_JWT_SECRET_ARN: secret ${ARN("jwt")} has no string value`,
      `STRIPE_WEBHOOK_SECRET_ARN: cannot read ${ARN("missing")}: ResourceNotFoundException: ${ARN("missing")}`,
    ]);
    expect(error.message).not.toContain("sk_live_do_not_print");
  });

  it("passes a custom max age to the provider", async () => {
    const fetch = fakeProvider({ [ARN("jwt")]: "j".repeat(40) });
    await resolveSecretEnv({ AUTH_JWT_SECRET_ARN: ARN("jwt") }, fetch, { maxAge: 60 });
    expect(fetch).toHaveBeenCalledWith(ARN("jwt"), { maxAge: 60 });
  });
});

describe("loadSecretsIntoEnv", () => {
  it("writes only the resolved secrets into the target, in place", async () => {
    const target: Record<string, string | undefined> = { TABLE_NAME: "t", STRIPE_SECRET_KEY_ARN: ARN("stripe") };
    await loadSecretsIntoEnv(target, fakeProvider({ [ARN("stripe")]: "sk_test_in_place" }));
    expect(target).toEqual({ TABLE_NAME: "t", STRIPE_SECRET_KEY_ARN: ARN("stripe"), STRIPE_SECRET_KEY: "sk_test_in_place" });
  });

  it("does nothing (and loads no SDK) when no ARN is set, as in local runs and tests", async () => {
    const target = { TABLE_NAME: "t" };
    const fetch = fakeProvider({});
    await loadSecretsIntoEnv(target, fetch);
    expect(target).toEqual({ TABLE_NAME: "t" });
    expect(fetch).not.toHaveBeenCalled();
  });

  it("rejects, leaving the target untouched, when a secret cannot be read", async () => {
    const target = { AUTH_JWT_SECRET_ARN: ARN("gone") };
    await expect(loadSecretsIntoEnv(target, fakeProvider({}))).rejects.toThrow(/AUTH_JWT_SECRET_ARN: cannot read/);
    expect(target).toEqual({ AUTH_JWT_SECRET_ARN: ARN("gone") });
  });
});

describe("isPlaceholderSecret", () => {
  it("recognizes only the stack's marker object", () => {
    expect(isPlaceholderSecret(JSON.stringify({ [SECRET_PLACEHOLDER_KEY]: "x" }))).toBe(true);
    expect(isPlaceholderSecret("sk_test_123")).toBe(false);
    expect(isPlaceholderSecret('{"other":"json secret"}')).toBe(false);
    expect(isPlaceholderSecret("{not json")).toBe(false);
  });
});

describe("the default provider (Powertools getSecret over the real SDK)", () => {
  it("reads GetSecretValue from Secrets Manager's endpoint, once per secret while cached", async () => {
    // A local stand-in for Secrets Manager's JSON API: proves the import path, call shape and caching.
    const { createServer } = await import("node:http");
    const calls: { target: string | undefined; secretId: string }[] = [];
    const server = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk) => {
        body += chunk;
      });
      req.on("end", () => {
        const { SecretId } = JSON.parse(body) as { SecretId: string };
        calls.push({ target: req.headers["x-amz-target"] as string | undefined, secretId: SecretId });
        res.writeHead(200, { "content-type": "application/x-amz-json-1.1" });
        res.end(JSON.stringify({ ARN: SecretId, Name: "jwt", SecretString: "from-the-endpoint-0123456789abcdef", VersionId: "v1" }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    vi.stubEnv("AWS_ENDPOINT_URL_SECRETS_MANAGER", `http://127.0.0.1:${port}`);
    vi.stubEnv("AWS_REGION", "us-east-1");
    vi.stubEnv("AWS_ACCESS_KEY_ID", "test");
    vi.stubEnv("AWS_SECRET_ACCESS_KEY", "test");
    try {
      const env = { AUTH_JWT_SECRET_ARN: ARN("jwt-default-provider") };
      expect((await resolveSecretEnv(env)).AUTH_JWT_SECRET).toBe("from-the-endpoint-0123456789abcdef");
      expect((await resolveSecretEnv(env)).AUTH_JWT_SECRET).toBe("from-the-endpoint-0123456789abcdef");
      expect(calls).toEqual([{ target: "secretsmanager.GetSecretValue", secretId: ARN("jwt-default-provider") }]);
    } finally {
      vi.unstubAllEnvs();
      server.close();
    }
  });
});
