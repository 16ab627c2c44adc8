import { decodeJwt } from "jose";
import { describe, expect, it } from "vitest";
import { devToken } from "../../infra/local/dev-secrets.js";

describe("npm start's dev tokens", () => {
  const env = { AUTH_JWT_SECRET: "x".repeat(40), AUTH_ISSUER: "https://issuer.test", AUTH_AUDIENCE: "users", AUTH_SERVICE_AUDIENCE: "gate-service" };

  it("sign the service token for the service audience and the user token for the users'", async () => {
    expect(decodeJwt(await devToken(env, { sub: "dev-chat-backend", scope: "gate" }))).toMatchObject({ aud: "gate-service", iss: env.AUTH_ISSUER });
    expect(decodeJwt(await devToken(env, { sub: "dev-user" }))).toMatchObject({ aud: "users", sub: "dev-user" });
  });

  it("use the one audience when no service audience is configured", async () => {
    const { AUTH_SERVICE_AUDIENCE: _unset, ...plain } = env;
    expect(decodeJwt(await devToken(plain, { sub: "dev-chat-backend", scope: "gate" })).aud).toBe("users");
  });
});
