import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import { invoke } from "../helpers/events.js";
import { SONNET, useAppFixture, useFunctions } from "../helpers/http.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { serviceToken, userToken } from "../helpers/tokens.js";

captureLogs();
const fx = useAppFixture();
const fns = useFunctions(fx);

describe("a chat, end to end over HTTP", () => {
  it("authorize → settle → balance → history, and the ledger audits clean", async () => {
    const user = uniqueUser("flow");
    const service = await serviceToken();
    const mine = await userToken(user);

    const auth = await invoke(fns.gate.handler, {
      routeKey: "POST /v1/gate/authorize",
      token: service,
      body: { userId: user, requestId: "chat-1", model: SONNET, inputTokens: 2000, maxOutputTokens: 4000 },
    });
    expect(auth.status).toBe(200);
    expect(auth.json).toMatchObject({ reserved: 66, balance: 10_000, available: 9_934, plan: "free" });

    const during = await invoke(fns.credits.handler, { routeKey: "GET /v1/credits", token: mine });
    expect(during.json).toMatchObject({ balance: 10_000, held: 66, available: 9_934 });

    const settle = await invoke(fns.gate.handler, {
      routeKey: "POST /v1/gate/settle",
      token: service,
      body: { holdId: auth.json.holdId, inputTokens: 2000, outputTokens: 1000 },
      base64: true,
    });
    expect(settle.status).toBe(200);
    expect(settle.json).toMatchObject({ charged: 21, released: 45, balance: 9_979 });

    const after = await invoke(fns.credits.handler, { routeKey: "GET /v1/credits", token: mine });
    expect(after.json).toMatchObject({ userId: user, balance: 9_979, held: 0, available: 9_979 });

    const history = await invoke(fns.credits.handler, { routeKey: "GET /v1/credits/history", token: mine });
    expect(history.status).toBe(200);
    expect(history.json.nextCursor).toBeNull();
    expect(history.json.entries.map((e: { reason: string; amount: number; balanceAfter: number }) => [e.reason, e.amount, e.balanceAfter])).toEqual([
      ["settle", -21, 9_979],
      ["signup", 10_000, 10_000],
    ]);
    expect((await auditAccount(fx.deps.ledger, user)).problems).toEqual([]);
  });
});
