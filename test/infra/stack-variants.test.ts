import { App } from "aws-cdk-lib";
import { Template } from "aws-cdk-lib/assertions";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FUNCTIONS } from "../../lib/routes.js";
import { CreditgateStack } from "../../infra/stack.js";
import { FUNCTION_NAMES, logicalId, type Synthesized, synthStack } from "./synth.js";

// biome-ignore lint/suspicious/noExplicitAny: CloudFormation JSON
type Json = any;

/** Stack options beyond the defaults: an OIDC issuer (JWKS) and secrets imported by name. */
let synth: Synthesized;
let resources: Record<string, Json>;

beforeAll(() => {
  synth = synthStack({
    auth: { jwksUrl: "https://issuer.example.test/.well-known/jwks.json", issuer: "https://issuer.example.test/" },
    secretNames: { STRIPE_SECRET_KEY: "prod/creditgate/stripe-secret-key" },
  });
  resources = Template.fromStack(synth.stack).toJSON().Resources;
}, 120_000);

afterAll(() => synth?.cleanup());

const env = (name: keyof typeof FUNCTIONS) =>
  resources[logicalId(synth.stack, synth.stack.functions[name].fn.node.defaultChild)].Properties.Environment.Variables;
const secretStatements = (name: keyof typeof FUNCTIONS) => {
  const role = logicalId(synth.stack, synth.stack.functions[name].role.node.defaultChild);
  return Object.values(resources)
    .filter((r) => r.Type === "AWS::IAM::Policy" && r.Properties.Roles.some((ref: Json) => ref.Ref === role))
    .flatMap((p) => p.Properties.PolicyDocument.Statement)
    .filter((s: Json) => JSON.stringify(s.Action).includes("secretsmanager:"));
};

describe("with a JWKS URL (OIDC issuer)", () => {
  it("creates no JWT secret and gives jwt functions AUTH_JWKS_URL instead of AUTH_JWT_SECRET_ARN", () => {
    expect(synth.stack.secrets.has("AUTH_JWT_SECRET")).toBe(false);
    for (const name of FUNCTION_NAMES) {
      expect(env(name).AUTH_JWT_SECRET_ARN).toBeUndefined();
      if (FUNCTIONS[name].auth === "jwt") expect(env(name).AUTH_JWKS_URL).toBe("https://issuer.example.test/.well-known/jwks.json");
    }
    // credits needed only the JWT secret: with JWKS it may read no secret at all.
    expect(secretStatements("credits")).toEqual([]);
  });
});

describe("with a secret imported by name", () => {
  it("creates no secret for it, passes its name and grants GetSecretValue on that name's ARNs only", () => {
    const created = Object.values(resources).filter((r) => r.Type === "AWS::SecretsManager::Secret");
    expect(created).toHaveLength(3); // only the Stripe webhook secret, the outgoing webhooks' signing secret and the chat proxy's upstream key are still created
    expect(env("subscribe").STRIPE_SECRET_KEY_ARN).toBe("prod/creditgate/stripe-secret-key");
    const [statement] = secretStatements("subscribe");
    expect(statement.Action).toBe("secretsmanager:GetSecretValue");
    // Secrets Manager appends a 6-character suffix to a secret's name in its ARN.
    expect(JSON.stringify(statement.Resource)).toContain(":secret:prod/creditgate/stripe-secret-key-??????");
    expect(JSON.stringify(statement.Resource)).not.toContain('"*"');
  });
});

describe("configuration the functions would refuse fails the synth", () => {
  // Validated with lib/config's own rules, before any function is bundled: these are fast.
  it.each([
    [{ prices: { STRIPE_PRICE_PRO_MONTHLY: "prod_123" } }, /STRIPE_PRICE_PRO_MONTHLY must be a Stripe price id/],
    [{ holdTtlSeconds: 5 }, /HOLD_TTL_SECONDS/],
    [{ appUrl: "ftp://app.example.test" }, /APP_URL must be an http\(s\) URL/],
    [{ auth: { jwksUrl: "http://issuer.example.test/jwks" } }, /AUTH_JWKS_URL must be an https URL/],
  ])("%o", (props, message) => {
    const app = new App();
    expect(() => new CreditgateStack(app, "Bad", { appUrl: "https://app.example.test", ...props })).toThrow(message);
  });
});
