import { describe, expect, it } from "vitest";
import { PLACEHOLDER_APP_URL, stackPropsFromContext } from "../../infra/context.js";
import { LAMBDA_ESBUILD_OPTIONS } from "../../infra/bundling.js";
import { nodejsBundling } from "../../infra/house-function.js";
import { OutputFormat } from "aws-cdk-lib/aws-lambda-nodejs";

const lookup = (values: Record<string, unknown>) => (key: string) => values[key];

describe("stackPropsFromContext (infra/app.ts)", () => {
  it("reads context first, then the variables the functions read", () => {
    const { props, warnings } = stackPropsFromContext(
      lookup({ appUrl: "https://ctx.example.test", STRIPE_PRICE_PRO_MONTHLY: "price_ctx", authorizeRateLimitPerMinute: 120 }),
      { APP_URL: "https://env.example.test", STRIPE_PRICE_PRO_MONTHLY: "price_env", STRIPE_PRICE_PACK_PRO: "price_pack", HOLD_TTL_SECONDS: "600" },
    );
    expect(warnings).toEqual([]);
    expect(props).toMatchObject({
      appUrl: "https://ctx.example.test",
      prices: { STRIPE_PRICE_PRO_MONTHLY: "price_ctx", STRIPE_PRICE_PACK_PRO: "price_pack" },
      authorizeRateLimitPerMinute: 120,
      holdTtlSeconds: 600,
    });
  });

  it("falls back to a placeholder app URL with a warning, so synth works in CI", () => {
    const { props, warnings } = stackPropsFromContext(lookup({}), {});
    expect(props.appUrl).toBe(PLACEHOLDER_APP_URL);
    expect(warnings.join()).toMatch(/appUrl not set/);
    expect(props.apiThrottle).toBeUndefined();
  });

  it("maps secret names and throttling, and refuses a non-number", () => {
    const { props } = stackPropsFromContext(
      lookup({ stripeSecretKeyName: "prod/stripe", apiRateLimit: "25", alarmEmail: "ops@example.test" }),
      {},
    );
    expect(props.secretNames).toEqual({ STRIPE_SECRET_KEY: "prod/stripe" });
    expect(props.apiThrottle).toEqual({ rateLimit: 25, burstLimit: 200 });
    expect(props.alarmEmail).toBe("ops@example.test");
    expect(() => stackPropsFromContext(lookup({ apiBurstLimit: "lots" }), {})).toThrow(/apiBurstLimit must be a whole number/);
  });

  it("never reads secret values, even when they are in the environment", () => {
    const { props } = stackPropsFromContext(lookup({}), { STRIPE_SECRET_KEY: "sk_test_x", AUTH_JWT_SECRET: "y".repeat(40) });
    expect(JSON.stringify(props)).not.toMatch(/sk_test_x|yyyy/);
  });
});

describe("bundling options: one source for infra/build.ts and the stack", () => {
  it("maps infra/bundling.ts's esbuild options to NodejsFunction's, local esbuild only", () => {
    const cdk = nodejsBundling();
    expect(cdk).toEqual({
      format: OutputFormat.ESM,
      target: LAMBDA_ESBUILD_OPTIONS.target,
      minify: true,
      sourceMap: true,
      mainFields: ["module", "main"],
      banner: LAMBDA_ESBUILD_OPTIONS.banner.js,
      externalModules: [],
      forceDockerBundling: false,
    });
    expect(LAMBDA_ESBUILD_OPTIONS).toMatchObject({ format: "esm", target: "node24", platform: "node", external: [] });
  });
});
