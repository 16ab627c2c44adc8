import type { SecretName } from "./routes.js";

/**
 * Secrets at cold start. When deployed, the template carries no secret values: each function's
 * environment holds `<NAME>_ARN` (the Secrets Manager ARN, or a secret name) for the secrets it
 * may read (lib/routes.ts `secrets`; the stack grants `GetSecretValue` on exactly those).
 * `resolveSecretEnv` fetches them and returns the environment with the plain `<NAME>` filled in,
 * which lib/config then validates as if it had been set directly (local runs and tests do that).
 */
export const SECRET_ENV_NAMES = [
  "AUTH_JWT_SECRET",
  "STRIPE_SECRET_KEY",
  "STRIPE_WEBHOOK_SECRET",
  "APP_WEBHOOK_SECRET",
  "UPSTREAM_API_KEY",
] as const satisfies readonly SecretName[];

/**
 * Secrets the stack creates start as a JSON object with this key (CloudFormation cannot create an
 * empty secret, and a random string would look like a real Stripe key). Such a value counts as
 * "not set": Stripe routes answer 503 STRIPE_NOT_CONFIGURED instead of calling Stripe with it.
 */
export const SECRET_PLACEHOLDER_KEY = "creditgatePlaceholder";

/**
 * Max age handed to Powertools' cache (seconds). Secrets are resolved once, at cold start
 * (lib/runtime.ts), and the validated config keeps them for the container's life, so a rotation
 * reaches fresh containers (see docs/deploy.md, "Secrets"), not running ones.
 */
export const SECRET_MAX_AGE_SECONDS = 300;

/** Reads one secret by ARN or name; the default is Powertools' cached `getSecret`. */
export type SecretFetcher = (secretId: string, options: { maxAge: number }) => Promise<unknown>;

export type Env = Record<string, string | undefined>;

export class SecretsError extends Error {
  constructor(readonly problems: string[]) {
    super(`Could not resolve secrets: ${problems.join("; ")}`);
    this.name = "SecretsError";
  }
}

/** Loaded only when an ARN is set, so local runs and tests never touch the Secrets Manager SDK. */
const powertoolsFetcher: SecretFetcher = async (secretId, { maxAge }) => {
  const { getSecret } = await import("@aws-lambda-powertools/parameters/secrets");
  return getSecret(secretId, { maxAge });
};

const isSet = (value: string | undefined): value is string => value !== undefined && value.trim() !== "";

/** True for the value a stack-created secret holds until an operator puts the real one. */
export function isPlaceholderSecret(value: string): boolean {
  if (!value.trimStart().startsWith("{")) return false;
  try {
    const parsed: unknown = JSON.parse(value);
    return typeof parsed === "object" && parsed !== null && SECRET_PLACEHOLDER_KEY in parsed;
  } catch {
    return false;
  }
}

function asText(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  if (value instanceof Uint8Array) return new TextDecoder().decode(value);
  return undefined;
}

/**
 * Returns a copy of `env` where every `<NAME>` among SECRET_ENV_NAMES that is unset but has a
 * `<NAME>_ARN` holds the secret's value. A plain `<NAME>` already set wins (no fetch). Fetches run
 * in parallel; any failure throws one SecretsError naming every variable that failed (never a value).
 */
export async function resolveSecretEnv(
  env: Env,
  fetchSecret: SecretFetcher = powertoolsFetcher,
  options: { maxAge?: number } = {},
): Promise<Env> {
  const maxAge = options.maxAge ?? SECRET_MAX_AGE_SECONDS;
  const resolved: Env = { ...env };
  const problems: string[] = [];
  const wanted = SECRET_ENV_NAMES.filter((name) => isSet(env[`${name}_ARN`]) && !isSet(env[name]));
  await Promise.all(
    wanted.map(async (name) => {
      const secretId = env[`${name}_ARN`] as string;
      let value: string | undefined;
      try {
        value = asText(await fetchSecret(secretId, { maxAge }));
      } catch (error) {
        problems.push(`${name}_ARN: cannot read ${secretId}: ${(error as Error).message ?? String(error)}`);
        return;
      }
      if (value === undefined || value.trim() === "") {
        problems.push(`${name}_ARN: secret ${secretId} has no string value`);
        return;
      }
      // Not set yet by the operator: leave the variable unset so config reports it as missing.
      if (isPlaceholderSecret(value)) return;
      resolved[name] = value;
    }),
  );
  if (problems.length > 0) throw new SecretsError(problems.sort());
  return resolved;
}

/**
 * The cold-start call: resolves the secrets and writes the filled-in `<NAME>`s into `target`
 * (process.env by default) before anything reads the config. Meant for one top-level await in
 * lib/runtime.ts: `await loadSecretsIntoEnv();`. Without any `<NAME>_ARN` it does nothing.
 */
export async function loadSecretsIntoEnv(target: Env = process.env, fetchSecret?: SecretFetcher): Promise<void> {
  const resolved = await resolveSecretEnv(target, fetchSecret);
  for (const name of SECRET_ENV_NAMES) {
    const value = resolved[name];
    if (value !== undefined) target[name] = value;
  }
}
