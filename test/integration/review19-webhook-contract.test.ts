import { describe, expect, it } from "vitest";
import { customerOf, useBillingFixture } from "../helpers/billing.js";
import { uniqueUser } from "../helpers/ledger.js";
import { checkResponse } from "../helpers/openapi.js";
import { stripeEvent, uniqueStripeId } from "../helpers/stripe-events.js";

/**
 * Review of issue 19 (OpenAPI document): the webhook's answers are not run through the response
 * check (fx.deliver uses `invoke`, not routeCaller), so an answer the document does not describe
 * goes unnoticed. A pack checkout whose session names no pack makes the webhook ask Stripe for the
 * session's line items (lib/billing/events.ts, packOf); when Stripe fails, mapStripeError throws
 * UpstreamError (502), which handleStripeWebhook rethrows as is (status >= 500), so the webhook
 * answers 502 UPSTREAM_ERROR — a status the document does not declare for stripeWebhook
 * (lib/openapi/operations.ts: CALLER_ERRORS.stripe + STRIPE_NOT_CONFIGURED, RETRY_LATER).
 */
const fx = useBillingFixture();

describe("the webhook's answers vs the OpenAPI document", () => {
  it("a Stripe failure while reading a pack session's line items answers a status the document declares", async () => {
    const userId = uniqueUser("rv19-webhook-502");
    const customer = await customerOf(fx, userId);
    const sessionId = uniqueStripeId("cs_test");
    const event = stripeEvent("checkout.session.completed.payment", {
      object: { id: sessionId, customer, client_reference_id: userId, payment_intent: uniqueStripeId("pi"), metadata: { userId } },
    });
    delete event.data.object.metadata.pack;
    fx.stripe.failNext({ match: `/v1/checkout/sessions/${sessionId}/line_items`, status: 500, body: { error: { type: "api_error", message: "boom" } } });

    const answer = await fx.deliver(event);
    // what the webhook actually answers
    expect({ status: answer.status, code: answer.json?.error?.code }).toEqual({ status: 502, code: "UPSTREAM_ERROR" });
    // the document must describe it (it declares 200, 400, 404, 500, 503 only)
    expect(() => checkResponse("POST /v1/stripe/webhook", { status: answer.status, headers: answer.headers, body: answer.json })).not.toThrow();
  });
});
