import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { exportJWK, generateKeyPair, type JWTPayload, SignJWT } from "jose";

export const TEST_SECRET = "test-secret-0123456789abcdef0123456789abcdef";
export const TEST_ISSUER = "https://auth.example.com/";
export const TEST_AUDIENCE = "creditgate";

export interface SignOptions {
  secret?: string;
  /** seconds from now; negative for an expired token; null for no exp at all */
  expiresIn?: number | null;
  notBefore?: number;
  issuer?: string | null;
  audience?: string | null;
  alg?: "HS256" | "HS384" | "HS512";
}

/** An HS256 (by default) token over the test secret with issuer, audience and a 5-minute expiry. */
export async function signToken(claims: JWTPayload, options: SignOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: options.alg ?? "HS256", typ: "JWT" }).setIssuedAt(now);
  if (options.expiresIn !== null) jwt.setExpirationTime(now + (options.expiresIn ?? 300));
  if (options.notBefore !== undefined) jwt.setNotBefore(now + options.notBefore);
  if (options.issuer !== null) jwt.setIssuer(options.issuer ?? TEST_ISSUER);
  if (options.audience !== null) jwt.setAudience(options.audience ?? TEST_AUDIENCE);
  return jwt.sign(new TextEncoder().encode(options.secret ?? TEST_SECRET));
}

export const userToken = (userId: string, options: SignOptions & { claims?: JWTPayload } = {}) =>
  signToken({ sub: userId, email: `${userId}@example.com`, ...options.claims }, options);

export const serviceToken = (options: SignOptions & { scope?: string } = {}) =>
  signToken({ sub: "chat-backend", scope: options.scope ?? "gate" }, options);

/** An unsecured JWT (`alg: none`): it must never be accepted. */
export function unsignedToken(claims: JWTPayload): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  return `${part({ alg: "none", typ: "JWT" })}.${part({ iss: TEST_ISSUER, aud: TEST_AUDIENCE, exp: now + 300, ...claims })}.`;
}

export interface JwksServer {
  url: string;
  /** how many times the key set was fetched */
  fetches(): number;
  sign(claims: JWTPayload, options?: { alg?: "RS256" | "ES256"; expiresIn?: number }): Promise<string>;
  close(): Promise<void>;
}

/** A tiny JWKS endpoint on 127.0.0.1 serving one RS256 and one ES256 public key. */
export async function startJwksServer(): Promise<JwksServer> {
  const rsa = await generateKeyPair("RS256");
  const ec = await generateKeyPair("ES256");
  const keys = [
    { ...(await exportJWK(rsa.publicKey)), kid: "rsa-1", alg: "RS256", use: "sig" },
    { ...(await exportJWK(ec.publicKey)), kid: "ec-1", alg: "ES256", use: "sig" },
  ];
  let fetches = 0;
  const server = createServer((request, response) => {
    if (request.url !== "/.well-known/jwks.json") {
      response.writeHead(404).end();
      return;
    }
    fetches++;
    response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    fetches: () => fetches,
    async sign(claims, options = {}) {
      const alg = options.alg ?? "RS256";
      const now = Math.floor(Date.now() / 1000);
      return new SignJWT(claims)
        .setProtectedHeader({ alg, kid: alg === "RS256" ? "rsa-1" : "ec-1" })
        .setIssuedAt(now)
        .setIssuer(TEST_ISSUER)
        .setAudience(TEST_AUDIENCE)
        .setExpirationTime(now + (options.expiresIn ?? 300))
        .sign(alg === "RS256" ? rsa.privateKey : ec.privateKey);
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
