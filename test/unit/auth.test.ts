import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createAuthenticator, type Principal, requireService, requireUser } from "../../lib/auth.js";
import { ForbiddenError, UnauthorizedError, UpstreamError } from "../../lib/errors.js";
import { VERIFIED_TOKEN_MAX_AGE_MS, VerifiedTokenCache } from "../../lib/verified-token-cache.js";
import { captureLogs } from "../helpers/logs.js";
import {
  type JwksServer,
  serviceToken,
  signToken,
  startJwksServer,
  TEST_AUDIENCE,
  TEST_ISSUER,
  TEST_SECRET,
  unsignedToken,
  userToken,
} from "../helpers/tokens.js";

captureLogs();
const hs = createAuthenticator({ jwtSecret: TEST_SECRET, issuer: TEST_ISSUER, audience: TEST_AUDIENCE });
const bearer = (token: string) => `Bearer ${token}`;

describe("HS256 shared secret", () => {
  it("turns a token with sub into a user principal", async () => {
    expect(await hs.authenticate(bearer(await userToken("u-1")))).toEqual({
      kind: "user",
      userId: "u-1",
      email: "u-1@example.com",
    });
  });

  it("turns a token whose scope contains gate into a service principal", async () => {
    expect(await hs.authenticate(bearer(await serviceToken({ scope: "read gate" })))).toEqual({
      kind: "service",
      scopes: ["read", "gate"],
      subject: "chat-backend",
    });
    // scopes are whole words: `gateway` or `gate:write` is not `gate`
    expect(await hs.authenticate(bearer(await userToken("u-2", { claims: { scope: "gateway gate:write" } })))).toMatchObject({
      kind: "user",
    });
  });

  it("separates scopes by the plain space only (RFC 6749 §3.3): other whitespace does not split out `gate`", async () => {
    for (const separator of ["\u00a0", "\t", "\n", "\u2003", "\u3000", "\u200b", "\r"]) {
      const principal = await hs.authenticate(bearer(await userToken("u-ws", { claims: { scope: `read${separator}gate` } })));
      expect(principal, JSON.stringify(separator)).toMatchObject({ kind: "user", userId: "u-ws" });
    }
    // repeated plain spaces are still just separators
    expect(await hs.authenticate(bearer(await serviceToken({ scope: "read  gate " })))).toMatchObject({
      kind: "service",
      scopes: ["read", "gate"],
    });
  });

  it("allows a few seconds of clock skew and no more", async () => {
    await expect(hs.authenticate(bearer(await userToken("u-3", { expiresIn: -3 })))).resolves.toMatchObject({ userId: "u-3" });
    await expect(hs.authenticate(bearer(await userToken("u-3", { expiresIn: -30 })))).rejects.toBeInstanceOf(UnauthorizedError);
    await expect(hs.authenticate(bearer(await userToken("u-3", { notBefore: 3 })))).resolves.toMatchObject({ userId: "u-3" });
    await expect(hs.authenticate(bearer(await userToken("u-3", { notBefore: 60 })))).rejects.toBeInstanceOf(UnauthorizedError);
  });

  it.each([
    ["no header", async () => undefined],
    ["an empty bearer", async () => "Bearer "],
    ["a non-bearer scheme", async () => `Token ${await userToken("u")}`],
    ["an oversize header", async () => bearer(`${"a".repeat(9000)}.b.c`)],
    ["no exp", async () => bearer(await userToken("u", { expiresIn: null }))],
    ["a wrong signature", async () => bearer(await userToken("u", { secret: "x".repeat(40) }))],
    ["alg none", async () => bearer(unsignedToken({ sub: "u" }))],
    ["HS384", async () => bearer(await userToken("u", { alg: "HS384" }))],
    ["a wrong audience", async () => bearer(await userToken("u", { audience: "other" }))],
    ["no audience", async () => bearer(await userToken("u", { audience: null }))],
    ["a wrong issuer", async () => bearer(await userToken("u", { issuer: "https://other/" }))],
    ["no sub", async () => bearer(await signToken({ email: "a@b.c" }))],
    ["an unusable sub", async () => bearer(await signToken({ sub: "a/b" }))],
    ["a non-string scope", async () => bearer(await signToken({ sub: "u", scope: ["gate"] }))],
    ["garbage", async () => "Bearer x.y.z"],
  ])("refuses %s with UnauthorizedError", async (_name, header) => {
    await expect(hs.authenticate(await header())).rejects.toBeInstanceOf(UnauthorizedError);
  });

  it("skips issuer and audience checks when they are not configured", async () => {
    const open = createAuthenticator({ jwtSecret: TEST_SECRET });
    await expect(open.authenticate(bearer(await userToken("u", { audience: null, issuer: null })))).resolves.toMatchObject({
      userId: "u",
    });
  });
});

describe("JWKS", () => {
  let jwks: JwksServer;
  beforeAll(async () => {
    jwks = await startJwksServer();
  });
  afterAll(() => jwks.close());

  it("verifies RS256 and ES256 tokens against the remote key set, fetched once", async () => {
    const auth = createAuthenticator({ jwksUrl: jwks.url, issuer: TEST_ISSUER, audience: TEST_AUDIENCE });
    expect(await auth.authenticate(bearer(await jwks.sign({ sub: "u-rs" })))).toMatchObject({ kind: "user", userId: "u-rs" });
    expect(await auth.authenticate(bearer(await jwks.sign({ sub: "svc", scope: "gate" }, { alg: "ES256" })))).toMatchObject({
      kind: "service",
    });
    // a second authenticator for the same URL shares the module-scope key set
    const again = createAuthenticator({ jwksUrl: jwks.url, issuer: TEST_ISSUER, audience: TEST_AUDIENCE });
    await again.authenticate(bearer(await jwks.sign({ sub: "u-2" })));
    expect(jwks.fetches()).toBe(1);
  });

  it("refuses HS256 tokens when only JWKS is configured, and expired ones", async () => {
    const auth = createAuthenticator({ jwksUrl: jwks.url, issuer: TEST_ISSUER, audience: TEST_AUDIENCE });
    await expect(auth.authenticate(bearer(await userToken("u")))).rejects.toBeInstanceOf(UnauthorizedError);
    await expect(auth.authenticate(bearer(await jwks.sign({ sub: "u" }, { expiresIn: -60 })))).rejects.toBeInstanceOf(
      UnauthorizedError,
    );
  });

  it("accepts both kinds when both a secret and JWKS are configured", async () => {
    const both = createAuthenticator({ jwtSecret: TEST_SECRET, jwksUrl: jwks.url, issuer: TEST_ISSUER, audience: TEST_AUDIENCE });
    expect(await both.authenticate(bearer(await serviceToken()))).toMatchObject({ kind: "service" });
    expect(await both.authenticate(bearer(await jwks.sign({ sub: "u-jwks" })))).toMatchObject({ userId: "u-jwks" });
  });

  it("answers 502, not 401, when the key set cannot be fetched", async () => {
    const down = createAuthenticator({ jwksUrl: "http://127.0.0.1:9/jwks.json" });
    await expect(down.authenticate(bearer(await jwks.sign({ sub: "u" })))).rejects.toBeInstanceOf(UpstreamError);
  });
});

describe("route requirements", () => {
  it("user routes take user principals only, gate routes service principals only", () => {
    const user: Principal = { kind: "user", userId: "u" };
    const service: Principal = { kind: "service", scopes: ["gate"] };
    expect(requireUser(user)).toBe(user);
    expect(requireService(service)).toBe(service);
    expect(() => requireUser(service)).toThrow(ForbiddenError);
    expect(() => requireService(user)).toThrow(ForbiddenError);
  });
});

describe("a separate service audience (AUTH_SERVICE_AUDIENCE)", () => {
  const SERVICE_AUDIENCE = "creditgate-gate";
  const auth = createAuthenticator({ jwtSecret: TEST_SECRET, issuer: TEST_ISSUER, audience: TEST_AUDIENCE, serviceAudience: SERVICE_AUDIENCE });

  it("a gate-scoped token for the service audience is the service", async () => {
    const token = await serviceToken({ audience: SERVICE_AUDIENCE });
    expect(await auth.authenticate(bearer(token))).toMatchObject({ kind: "service", scopes: ["gate"] });
  });

  it("a user token that carries the gate scope stays a user (and is refused by the gate routes)", async () => {
    const token = await userToken("u-scoped", { claims: { scope: "gate" } }); // the users' audience
    const principal = await auth.authenticate(bearer(token));
    expect(principal).toMatchObject({ kind: "user", userId: "u-scoped" });
    expect(() => requireService(principal)).toThrow(ForbiddenError);
  });

  it("user tokens still work; a token for neither audience is refused", async () => {
    expect(await auth.authenticate(bearer(await userToken("u-plain")))).toMatchObject({ kind: "user", userId: "u-plain" });
    await expect(auth.authenticate(bearer(await serviceToken({ audience: "someone-else" })))).rejects.toBeInstanceOf(UnauthorizedError);
  });

  it("without it, the gate scope alone makes the service (the default, documented in SECURITY.md)", async () => {
    const token = await userToken("u-scoped", { claims: { scope: "gate" } });
    expect(await hs.authenticate(bearer(token))).toMatchObject({ kind: "service" });
  });
});

describe("verified tokens, remembered per container (lib/verified-token-cache.ts)", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("stops honouring a remembered token once its exp (and jose's 5 s tolerance) has passed", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const auth = createAuthenticator({ jwtSecret: TEST_SECRET, issuer: TEST_ISSUER, audience: TEST_AUDIENCE });
    const token = await userToken("u-cached", { expiresIn: 30 });
    expect(await auth.authenticate(bearer(token))).toMatchObject({ userId: "u-cached" });
    vi.setSystemTime(Date.now() + 20_000);
    expect(await auth.authenticate(bearer(token))).toMatchObject({ userId: "u-cached" });
    // within the cache's 60 s, but past exp: a cache that ignored exp would still answer
    vi.setSystemTime(Date.now() + 16_000);
    await expect(auth.authenticate(bearer(token))).rejects.toBeInstanceOf(UnauthorizedError);
  });

  it("never answers a changed token from the cache, and remembers no refusal", async () => {
    const auth = createAuthenticator({ jwtSecret: TEST_SECRET, issuer: TEST_ISSUER, audience: TEST_AUDIENCE });
    const token = await userToken("u-tamper");
    await auth.authenticate(bearer(token));
    const [header, payload, signature] = token.split(".") as [string, string, string];
    const forgedPayload = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, "base64url").toString()), sub: "u-victim" })).toString("base64url");
    await expect(auth.authenticate(bearer(`${header}.${forgedPayload}.${signature}`))).rejects.toBeInstanceOf(UnauthorizedError);
    const flipped = `${header}.${payload}.${signature.slice(0, -2)}${signature.endsWith("AA") ? "BB" : "AA"}`;
    await expect(auth.authenticate(bearer(flipped))).rejects.toBeInstanceOf(UnauthorizedError);
    await expect(auth.authenticate(bearer(flipped))).rejects.toBeInstanceOf(UnauthorizedError);
    expect(await auth.authenticate(bearer(token))).toMatchObject({ userId: "u-tamper" });
  });

  it("keeps an entry at most 60 s, never past exp, and at most 500 entries (oldest out)", () => {
    let now = 1_000_000;
    const cache = new VerifiedTokenCache<string>(() => now);
    cache.set("a", "A", now / 1000 + 3600);
    now += VERIFIED_TOKEN_MAX_AGE_MS - 1;
    expect(cache.get("a")).toBe("A");
    now += 1;
    expect(cache.get("a")).toBeUndefined();
    cache.set("b", "B", now / 1000 + 10);
    now += 10_000;
    expect(cache.get("b")).toBeUndefined();
    cache.set("expired", "E", now / 1000 - 1);
    expect(cache.get("expired")).toBeUndefined();
    for (let i = 0; i < 501; i++) cache.set(`t${i}`, `T${i}`, now / 1000 + 3600);
    expect(cache.size).toBe(500);
    expect(cache.get("t0")).toBeUndefined();
    expect(cache.get("t1")).toBe("T1");
    expect(cache.get("t500")).toBe("T500");
  });
});
