import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { handleStripeWebhook } from "../lib/billing/index.js";
import { type BillingAppDeps, webhookDeps } from "../lib/billing/runtime.js";
import { NotFoundError } from "../lib/errors.js";
import { json } from "../lib/http/response.js";
import type { WebhookResponse } from "../lib/http/responses.js";
import { type RawRoute, rawBodyHandler } from "../lib/http/raw-stack.js";

/** The exact bytes Stripe signed: API Gateway base64-encodes some bodies, so decode those first. */
export function rawBody(event: APIGatewayProxyEventV2): string | Buffer {
  if (event.body === undefined || event.body === null) return "";
  return event.isBase64Encoded ? Buffer.from(event.body, "base64") : event.body;
}

/** Stripe → us. Authenticated by the signature over the raw body, not by a JWT. */
export const route: RawRoute<Pick<BillingAppDeps, "billing">> = async (event, deps) => {
  if (event.routeKey !== "POST /v1/stripe/webhook") throw new NotFoundError(`No route ${event.routeKey.slice(0, 100)}`);
  // typed with its response schema (lib/http/responses.ts), the OpenAPI document's source
  const result: WebhookResponse = await handleStripeWebhook(deps.billing, {
    payload: rawBody(event),
    signature: event.headers?.["stripe-signature"],
  });
  return json(result);
};

// Cold start: bad config throws here; a missing STRIPE_WEBHOOK_SECRET answers 503 per request.
export const handler = rawBodyHandler(route, webhookDeps());
