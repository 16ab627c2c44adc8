import { beforeAll, describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { invoke } from "../helpers/events.js";
import { itemsOf, SONNET, useAppFixture, useFunctions } from "../helpers/http.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { serviceToken, signToken, TEST_SECRET, unsignedToken, userToken } from "../helpers/tokens.js";

captureLogs();
const fx = useAppFixture();
const fns = useFunctions(fx);
const victim = uniqueUser("victim");
const attacker = uniqueUser("attacker");
let holdId: string;

beforeAll(async () => {
  const auth = await invoke(fns.gate.handler, {
    routeKey: "POST /v1/gate/authorize",
    token: await serviceToken(),
    body: { userId: victim, requestId: "v-1", model: SONNET, inputTokens: 1000, maxOutputTokens: 1000 },
  });
  holdId = auth.json.holdId;
});

/** Every token an end user could hold or make: their own, and forgeries of a service token. */
async function tokensAnEndUserCanGet(): Promise<Record<string, string>> {
  return {
    "their own user token": await userToken(attacker),
    "their own token with other scopes": await userToken(attacker, { claims: { scope: "openid profile gateway gate:write" } }),
    "a service token they signed with their own key": await serviceToken({ secret: "attacker-secret-0123456789abcdef0123456" }),
    "a victim token they signed with their own key": await userToken(victim, { secret: "attacker-secret-0123456789abcdef0123456" }),
    "an unsigned service token": unsignedToken({ sub: attacker, scope: "gate" }),
    "an unsigned victim token": unsignedToken({ sub: victim }),
    "an expired service token": await serviceToken({ expiresIn: -3600 }),
    "a service token for another API": await serviceToken({ audience: "another-api" }),
    "a service token re-signed with HS512": await signToken({ sub: attacker, scope: "gate" }, { alg: "HS512", secret: TEST_SECRET.slice(0, 10) }),
  };
}

describe("an end user against someone else's account", () => {
  it("cannot settle, release or authorize with any token they can get", async () => {
    const before = await itemsOf(fx.client, fx.tableName, victim);
    for (const [name, token] of Object.entries(await tokensAnEndUserCanGet())) {
      const attempts = [
        { routeKey: "POST /v1/gate/settle", body: { holdId, inputTokens: 0, outputTokens: 1_000_000 } },
        { routeKey: "POST /v1/gate/release", body: { holdId } },
        {
          routeKey: "POST /v1/gate/authorize",
          body: { userId: victim, requestId: "evil", model: SONNET, inputTokens: 1, maxOutputTokens: 1 },
        },
      ];
      for (const attempt of attempts) {
        const res = await invoke(fns.gate.handler, { ...attempt, token });
        expect([401, 403], `${name}: ${attempt.routeKey}`).toContain(res.status);
      }
    }
    expect(await itemsOf(fx.client, fx.tableName, victim)).toEqual(before);
    expect(await itemsOf(fx.client, fx.tableName, attacker)).toEqual([]);
  });

  it("cannot read another account: the account is always the token's own", async () => {
    const token = await userToken(attacker);
    const own = await invoke(fns.credits.handler, {
      routeKey: "GET /v1/credits",
      token,
      headers: { "x-user-id": victim },
    });
    expect(own.status).toBe(200);
    expect(own.json.userId).toBe(attacker);
    for (const routeKey of ["GET /v1/credits", "GET /v1/credits/history"]) {
      const named = await invoke(fns.credits.handler, { routeKey, token, query: { userId: victim } });
      expect(named.status).toBe(400);
    }
    const history = await invoke(fns.credits.handler, { routeKey: "GET /v1/credits/history", token });
    // The attacker's own (never used, so still empty) history: none of the victim's entries.
    expect(history.status).toBe(200);
    expect(history.json.entries).toEqual([]);
    for (const [name, forged] of Object.entries(await tokensAnEndUserCanGet())) {
      if (name === "their own user token" || name === "their own token with other scopes") continue;
      const res = await invoke(fns.credits.handler, { routeKey: "GET /v1/credits", token: forged });
      expect([401, 403], name).toContain(res.status);
    }
  });

  it("left the victim's hold open and the ledger consistent", async () => {
    const view = await invoke(fns.credits.handler, { routeKey: "GET /v1/credits", token: await userToken(victim) });
    expect(view.json).toMatchObject({ balance: 10_000, held: 18 });
    expect((await auditAccount(fx.deps.ledger, victim)).problems).toEqual([]);
  });
});
