import { describe, expect, it } from "vitest";
import { invoke } from "../helpers/events.js";
import { SONNET, useAppFixture, useFunctions } from "../helpers/http.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { serviceToken, userToken } from "../helpers/tokens.js";

/** The deployed wiring of AUTH_SERVICE_AUDIENCE: config → runtime → the gate's authenticator. */
captureLogs();
const SERVICE_AUDIENCE = "creditgate-gate";
const fns = useFunctions(useAppFixture(), { AUTH_SERVICE_AUDIENCE: SERVICE_AUDIENCE });

const authorize = (token: string) =>
  invoke(fns.gate.handler, {
    routeKey: "POST /v1/gate/authorize",
    token,
    body: { userId: uniqueUser(), requestId: "r1", model: SONNET, inputTokens: 100, maxOutputTokens: 100 },
  });

describe("AUTH_SERVICE_AUDIENCE on the chat-gate function", () => {
  it("admits a gate token minted for the service audience", async () => {
    expect((await authorize(await serviceToken({ audience: SERVICE_AUDIENCE }))).status).toBe(200);
  });

  it("refuses with 403 a user token that carries the gate scope", async () => {
    const res = await authorize(await userToken("u-scoped", { claims: { scope: "gate" } }));
    expect(res.status).toBe(403);
    expect(res.json.error.code).toBe("FORBIDDEN");
  });
});
