import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { SignJWT } from "jose";

export interface DevSecrets {
  AUTH_JWT_SECRET: string;
  STRIPE_WEBHOOK_SECRET: string;
  /** signs the outgoing webhooks (lib/events); `npm run webhook:listen` verifies with it */
  APP_WEBHOOK_SECRET: string;
}

/**
 * Dev values for the two secrets when the environment does not set them. With a data folder they
 * are kept beside the data, so tokens printed yesterday still work; in memory they live and die
 * with the process.
 */
export function devSecrets(env: NodeJS.ProcessEnv, file: string | undefined): DevSecrets {
  const stored: Partial<DevSecrets> = file && existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) : {};
  const generated: DevSecrets = {
    AUTH_JWT_SECRET: stored.AUTH_JWT_SECRET ?? randomBytes(32).toString("hex"),
    STRIPE_WEBHOOK_SECRET: stored.STRIPE_WEBHOOK_SECRET ?? `whsec_${randomBytes(24).toString("hex")}`,
    // Standard Webhooks: whsec_ and the key in base64
    APP_WEBHOOK_SECRET: stored.APP_WEBHOOK_SECRET ?? `whsec_${randomBytes(24).toString("base64")}`,
  };
  if (file) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, JSON.stringify(generated, null, 2), { mode: 0o600 });
  }
  return {
    AUTH_JWT_SECRET: env.AUTH_JWT_SECRET || generated.AUTH_JWT_SECRET,
    STRIPE_WEBHOOK_SECRET: env.STRIPE_WEBHOOK_SECRET || generated.STRIPE_WEBHOOK_SECRET,
    APP_WEBHOOK_SECRET: env.APP_WEBHOOK_SECRET || generated.APP_WEBHOOK_SECRET,
  };
}

/** A dev token signed with the local secret (and the configured issuer and audience, if any). */
export async function devToken(
  env: NodeJS.ProcessEnv,
  claims: Record<string, unknown>,
  expiresInSeconds = 24 * 3600,
): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: "HS256", typ: "JWT" }).setIssuedAt().setExpirationTime(`${expiresInSeconds}s`);
  if (env.AUTH_ISSUER) jwt.setIssuer(env.AUTH_ISSUER);
  // a service token (scope gate) is for the service audience when one is configured
  const forService = typeof claims.scope === "string" && claims.scope.split(/\s+/).includes("gate");
  const audience = forService && env.AUTH_SERVICE_AUDIENCE ? env.AUTH_SERVICE_AUDIENCE : env.AUTH_AUDIENCE;
  if (audience) jwt.setAudience(audience);
  return jwt.sign(new TextEncoder().encode(env.AUTH_JWT_SECRET));
}
