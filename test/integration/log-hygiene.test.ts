import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { useBillingFixture } from "../helpers/billing.js";
import { invoke } from "../helpers/events.js";
import { SONNET, useFunctions } from "../helpers/http.js";
import { uniqueUser } from "../helpers/ledger.js";
import { signatureFor, stripeEvent, uniqueStripeId, WEBHOOK_SECRET } from "../helpers/stripe-events.js";
import { serviceToken, TEST_SECRET, userToken } from "../helpers/tokens.js";

/**
 * SECURITY.md: nothing logs a token, a signature, a secret or a request body. Every byte the
 * functions write to stdout and stderr (JSON log lines or not) is captured and searched.
 */
let written = "";
beforeEach(() => {
  written = "";
  for (const stream of [process.stdout, process.stderr]) {
    vi.spyOn(stream, "write").mockImplementation(((chunk: unknown) => {
      written += String(chunk);
      return true;
    }) as typeof stream.write);
  }
});
afterEach(() => {
  vi.restoreAllMocks();
});

const fx = useBillingFixture();
const fns = useFunctions(fx);

const BODY_MARKER = "body-marker-7f3a9c";

describe("what the functions log", () => {
  it("a chat, refused tokens and a refused body log no token, secret or body", async () => {
    const token = await serviceToken();
    const userId = uniqueUser();
    const ok = await invoke(fns.gate.handler, {
      routeKey: "POST /v1/gate/authorize",
      token,
      body: { userId, requestId: "r1", model: SONNET, inputTokens: 100, maxOutputTokens: 100 },
    });
    expect(ok.status).toBe(200);
    const settled = await invoke(fns.gate.handler, {
      routeKey: "POST /v1/gate/settle",
      token,
      body: { holdId: ok.json.holdId, inputTokens: 100, outputTokens: 50 },
    });
    expect(settled.status).toBe(200);
    const expired = await serviceToken({ expiresIn: -60 });
    expect((await invoke(fns.gate.handler, { routeKey: "POST /v1/gate/release", token: expired, body: { holdId: "x" } })).status).toBe(401);
    const userTokenValue = await userToken(userId);
    expect((await invoke(fns.gate.handler, { routeKey: "POST /v1/gate/release", token: userTokenValue, body: { holdId: "x" } })).status).toBe(403);
    const refused = await invoke(fns.gate.handler, {
      routeKey: "POST /v1/gate/authorize",
      token,
      body: { userId, requestId: "r2", model: SONNET, inputTokens: 100, maxOutputTokens: 100, note: BODY_MARKER },
    });
    expect(refused.status).toBe(400);

    expect(written.length).toBeGreaterThan(0); // the requests were logged
    for (const secret of [token, expired, userTokenValue, ok.json.holdId, TEST_SECRET, BODY_MARKER]) {
      expect(written.includes(secret), `logged: ${secret.slice(0, 24)}…`).toBe(false);
    }
    // the tokens' signatures alone, in case a token was logged in pieces
    for (const jwt of [token, expired, userTokenValue]) expect(written.includes(jwt.split(".")[2] as string)).toBe(false);
  });

  it("webhook deliveries, forged or not, log no signature, secret or payload", async () => {
    const userId = uniqueUser();
    const event = stripeEvent("checkout.session.completed.payment", {
      object: {
        id: uniqueStripeId("cs"),
        customer: uniqueStripeId("cus"),
        client_reference_id: userId,
        payment_intent: uniqueStripeId("pi"),
        metadata: { userId, pack: "starter", note: BODY_MARKER },
        customer_details: { email: `${BODY_MARKER}@example.com` },
      },
    });
    const payload = JSON.stringify(event);
    const signature = signatureFor(payload);
    expect((await fx.deliver(payload, { signature })).status).toBe(200);
    const forged = signatureFor(payload, { secret: "whsec_forged_0123456789" });
    expect((await fx.deliver(payload, { signature: forged })).status).toBe(400);
    expect((await fx.deliver(`${payload} `, { signature })).status).toBe(400); // altered body

    expect(written).toContain(event.id); // the event is logged by id
    for (const secret of [signature, forged, WEBHOOK_SECRET, BODY_MARKER]) {
      expect(written.includes(secret), `logged: ${secret.slice(0, 24)}…`).toBe(false);
    }
    for (const header of [signature, forged]) {
      const v1 = header.split(",").find((part) => part.startsWith("v1="));
      expect(written.includes(v1 as string)).toBe(false);
    }
  });
});
