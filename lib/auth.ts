import { createRemoteJWKSet, decodeProtectedHeader, errors, type JWTPayload, type JWTVerifyOptions, jwtVerify } from "jose";
import { ForbiddenError, UnauthorizedError, UpstreamError } from "./errors.js";
import { userIdSchema } from "./ledger/validation.js";
import { logger } from "./logger.js";
import { VerifiedTokenCache } from "./verified-token-cache.js";

/** Who is calling: an end user (their own account only) or a service holding the `gate` scope. */
export type Principal = UserPrincipal | ServicePrincipal;
export interface UserPrincipal {
  kind: "user";
  userId: string;
  email?: string;
}
export interface ServicePrincipal {
  kind: "service";
  scopes: string[];
  subject?: string;
}

export const GATE_SCOPE = "gate";

export interface AuthSettings {
  jwtSecret?: string | undefined;
  jwksUrl?: string | undefined;
  issuer?: string | undefined;
  audience?: string | undefined;
  /**
   * When set, a token acts as the service only if its `aud` includes this audience as well as the
   * `gate` scope: a user token that wrongly carries `gate` (an identity provider letting users pick
   * scopes) stays a user token. Service tokens are then minted for this audience alone.
   */
  serviceAudience?: string | undefined;
}

export interface Authenticator {
  /** The principal of an `Authorization: Bearer <JWT>` header; UnauthorizedError otherwise. */
  authenticate(authorization: string | undefined): Promise<Principal>;
}

const SECRET_ALGORITHMS = ["HS256"];
const JWKS_ALGORITHMS = ["RS256", "ES256"];
const CLOCK_TOLERANCE_SECONDS = 5;
const MAX_TOKEN_LENGTH = 8192;
const BEARER = /^Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$/i;

/** Module scope: jose caches the fetched keys inside each set, so a warm Lambda fetches them once. */
const jwksSets = new Map<string, ReturnType<typeof createRemoteJWKSet>>();
function remoteKeySet(url: string) {
  let set = jwksSets.get(url);
  if (!set) {
    set = createRemoteJWKSet(new URL(url));
    jwksSets.set(url, set);
  }
  return set;
}

/** The JWKS endpoint failing is our outage, not a bad token: answer 502 so the caller retries. */
const isKeySetOutage = (error: unknown) =>
  !(error instanceof errors.JOSEError) || // network failure
  error.code === "ERR_JOSE_GENERIC" || // non-200 or non-JSON answer
  error instanceof errors.JWKSTimeout ||
  error instanceof errors.JWKSInvalid;

const audiencesOf = (payload: JWTPayload): string[] =>
  typeof payload.aud === "string" ? [payload.aud] : Array.isArray(payload.aud) ? payload.aud : [];

function principalOf(payload: JWTPayload, serviceAudience: string | undefined): Principal {
  const { scope, sub, email } = payload;
  if (scope !== undefined && typeof scope !== "string") throw new UnauthorizedError();
  // OAuth scopes are separated by the plain space alone (RFC 6749 §3.3): splitting on any
  // whitespace would read `read\u00a0gate` as holding `gate`.
  const scopes = scope ? scope.split(" ").filter(Boolean) : [];
  const forService = serviceAudience === undefined || audiencesOf(payload).includes(serviceAudience);
  if (scopes.includes(GATE_SCOPE) && forService) {
    return { kind: "service", scopes, ...(typeof sub === "string" ? { subject: sub } : {}) };
  }
  const userId = userIdSchema.safeParse(sub);
  if (!userId.success) throw new UnauthorizedError();
  return {
    kind: "user",
    userId: userId.data,
    ...(typeof email === "string" && email.length <= 320 ? { email } : {}),
  };
}

export function createAuthenticator(settings: AuthSettings): Authenticator {
  if (!settings.jwtSecret && !settings.jwksUrl) throw new Error("auth needs a JWT secret or a JWKS URL");
  const secret = settings.jwtSecret ? new TextEncoder().encode(settings.jwtSecret) : undefined;
  const keySet = settings.jwksUrl ? remoteKeySet(settings.jwksUrl) : undefined;
  const common: JWTVerifyOptions = {
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
    requiredClaims: ["exp"], // a token that never expires is a credential we cannot take back
    ...(settings.issuer ? { issuer: settings.issuer } : {}),
    // With a service audience, a token must be for one of the two (jose: aud includes either).
    ...(settings.audience
      ? { audience: settings.serviceAudience ? [settings.audience, settings.serviceAudience] : settings.audience }
      : {}),
  };

  async function verify(token: string): Promise<JWTPayload> {
    // The header only picks which allowlisted verifier runs; the signature decides the rest.
    const { alg } = decodeProtectedHeader(token);
    if (secret && alg && SECRET_ALGORITHMS.includes(alg)) {
      return (await jwtVerify(token, secret, { ...common, algorithms: SECRET_ALGORITHMS })).payload;
    }
    if (keySet) {
      try {
        return (await jwtVerify(token, keySet, { ...common, algorithms: JWKS_ALGORITHMS })).payload;
      } catch (error) {
        if (isKeySetOutage(error)) {
          logger.error("JWKS unavailable", error as Error);
          throw new UpstreamError("The token issuer's keys could not be fetched; please retry");
        }
        throw error;
      }
    }
    throw new errors.JOSEAlgNotAllowed(`alg ${String(alg)} is not accepted`);
  }

  const verified = new VerifiedTokenCache<Principal>();

  return {
    async authenticate(authorization) {
      const match = authorization && authorization.length <= MAX_TOKEN_LENGTH ? BEARER.exec(authorization.trim()) : null;
      if (!match?.[1]) {
        logger.info("token refused", { reason: authorization ? "MALFORMED" : "MISSING" });
        throw new UnauthorizedError();
      }
      const token = match[1];
      const known = verified.get(token);
      if (known) return known;
      try {
        const payload = await verify(token);
        const principal = principalOf(payload, settings.serviceAudience);
        verified.set(token, Object.freeze(principal), payload.exp as number); // exp is a required claim
        return principal;
      } catch (error) {
        if (error instanceof UpstreamError) throw error;
        // Why is logged for operators; the caller only ever learns UNAUTHORIZED.
        logger.info("token refused", { reason: error instanceof errors.JOSEError ? error.code : "CLAIMS" });
        throw new UnauthorizedError();
      }
    },
  };
}

export function requireUser(principal: Principal): UserPrincipal {
  if (principal.kind !== "user") throw new ForbiddenError("This route needs a user token");
  return principal;
}

export function requireService(principal: Principal): ServicePrincipal {
  if (principal.kind !== "service") throw new ForbiddenError("This route needs a service token with the gate scope");
  return principal;
}
