import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { describe, expect, it } from "vitest";
import { useBillingFixture } from "../helpers/billing.js";
import { httpEvent, invoke, type EventOptions } from "../helpers/events.js";
import { SONNET, useFunctions } from "../helpers/http.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { signatureFor, stripeEvent, uniqueStripeId } from "../helpers/stripe-events.js";
import { serviceToken, userToken } from "../helpers/tokens.js";

/**
 * API Gateway lower-cases header names, but a direct invoke, a test console or another front door
 * may not: the middy header normalizer makes every function read `Authorization`,
 * `Content-Type` and `Stripe-Signature` whatever their case.
 */
captureLogs();
const fx = useBillingFixture();
const fns = useFunctions(fx);

const CANONICAL: Record<string, string> = {
  authorization: "Authorization",
  "content-type": "Content-Type",
  "content-length": "Content-Length",
  "stripe-signature": "Stripe-Signature",
};

/** The same event with its headers spelled the way clients send them. */
function mixedCase(options: EventOptions): APIGatewayProxyEventV2 {
  const event = httpEvent(options);
  event.headers = Object.fromEntries(Object.entries(event.headers).map(([name, value]) => [CANONICAL[name] ?? name, value]));
  return event;
}

describe("header names in any case", () => {
  it("the gate reads a mixed-case Authorization and Content-Type", async () => {
    const event = mixedCase({
      routeKey: "POST /v1/gate/authorize",
      token: await serviceToken(),
      body: { userId: uniqueUser(), requestId: "r1", model: SONNET, inputTokens: 100, maxOutputTokens: 100 },
    });
    expect(Object.keys(event.headers)).toContain("Authorization");
    const res = await invoke(fns.gate.handler, event);
    expect(res.status).toBe(200);
    expect(res.json.holdId).toEqual(expect.any(String));
  });

  it("the credits reader reads a mixed-case Authorization", async () => {
    const user = uniqueUser();
    const res = await invoke(fns.credits.handler, mixedCase({ routeKey: "GET /v1/credits", token: await userToken(user) }));
    expect(res.status).toBe(200);
    expect(res.json.balance).toBe(10_000);
  });

  it("the webhook reads a mixed-case Stripe-Signature", async () => {
    const payload = JSON.stringify(stripeEvent("customer.created", { id: uniqueStripeId("evt") }));
    const event = mixedCase({ routeKey: "POST /v1/stripe/webhook", body: payload, headers: { "stripe-signature": signatureFor(payload) } });
    expect(Object.keys(event.headers)).toContain("Stripe-Signature");
    const res = await invoke(fx.fns.webhook.handler, event);
    expect(res.status).toBe(200);
  });
});
