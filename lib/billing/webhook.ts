import { AppError, StripeNotConfiguredError, ValidationError } from "../errors.js";
import { logger } from "../logger.js";
import type { BillingDeps } from "./deps.js";
import { applyStripeEvent, isParkedOutcome, type StripeEventEnvelope } from "./events.js";
import { parkEvent, replayParkedEvents } from "./parked.js";
import { stripeEventEnvelope } from "./schemas.js";
import { PINNED_API_VERSION, verifyWebhook, WebhookSignatureError } from "./stripe-port.js";

export interface WebhookDelivery {
  /** the exact bytes Stripe signed (API Gateway's base64 already decoded) */
  payload: string | Buffer;
  signature: string | undefined;
}

export interface WebhookResult {
  received: true;
  eventId: string;
  type: string;
  /** what applying it did, or `duplicate` for an event applied before */
  outcome: string;
}

/** Transient failures must reach Stripe as 5xx (it retries those); a retryable 409 included. */
class WebhookRetryError extends AppError {
  constructor() {
    super(503, "INTERNAL", "The event could not be applied now; Stripe will retry it");
  }
}

const MAPS_CUSTOMER = new Set(["checkout.session.completed", "checkout.session.async_payment_succeeded"]);

const payloadText = (payload: string | Buffer) => (typeof payload === "string" ? payload : payload.toString("utf8"));

function envelopeOf(event: unknown): StripeEventEnvelope {
  if (!stripeEventEnvelope.safeParse(event).success) throw new ValidationError("body: not a Stripe event", "body");
  return event as StripeEventEnvelope;
}

/**
 * POST /v1/stripe/webhook. Verifies the signature over the exact payload (5-minute tolerance),
 * answers a redelivery of an applied event from its receipt, applies the event, and only then
 * records the receipt: a crash or a failure mid-way answers 5xx and Stripe's retry applies the
 * event again, which every effect tolerates (ledger keys, conditional writes). Concurrent
 * copies of one event all apply idempotently and all answer 200.
 */
export async function handleStripeWebhook(deps: BillingDeps, delivery: WebhookDelivery): Promise<WebhookResult> {
  if (!deps.webhookSecret) throw new StripeNotConfiguredError(["STRIPE_WEBHOOK_SECRET"]);
  if (!delivery.signature) throw new ValidationError("stripe-signature: missing", "stripe-signature");
  let verified: unknown;
  try {
    verified = verifyWebhook(delivery.payload, delivery.signature, deps.webhookSecret);
  } catch (error) {
    if (error instanceof WebhookSignatureError) {
      logger.warn("stripe webhook refused", { reason: error.message });
      throw new ValidationError(`stripe-signature: ${error.message}`, "stripe-signature");
    }
    throw error;
  }
  const event = envelopeOf(verified);
  logger.appendKeys({ stripeEventId: event.id, stripeEventType: event.type });
  const apiVersion = (verified as { api_version?: unknown }).api_version;
  if (typeof apiVersion === "string" && apiVersion !== PINNED_API_VERSION) {
    logger.warn("webhook endpoint API version differs from the SDK's pinned version", { apiVersion, pinned: PINNED_API_VERSION });
  }

  const receipt = await deps.store.getReceipt(event.id);
  if (receipt) {
    logger.info("stripe event already applied", { outcome: receipt.outcome });
    return { received: true, eventId: event.id, type: event.type, outcome: "duplicate" };
  }
  let outcome: string;
  try {
    outcome = await applyStripeEvent(deps, event);
  } catch (error) {
    // Everything here is retryable from Stripe's side: nothing was half-applied that a retry cannot finish.
    if (error instanceof AppError && error.status < 500) {
      // `detail`, not `message`: the logger reserves that key and would drop the error's text
      logger.error("stripe event could not be applied", { code: error.code, detail: error.message });
      throw new WebhookRetryError();
    }
    throw error;
  }
  if (isParkedOutcome(outcome)) {
    // Not applied, and not acknowledged as done: no receipt (a redelivery is tried again, never
    // answered `duplicate`), a durable parked record instead. 200: the event is safely ours now,
    // and our replays (automatic when the missing fact arrives, or an operator's) take over
    // Stripe's retries. A failure to park answers 5xx, so Stripe keeps the event.
    await parkEvent(deps, event, payloadText(delivery.payload), outcome);
    return { received: true, eventId: event.id, type: event.type, outcome };
  }
  await deps.store.putReceipt(
    { eventId: event.id, type: event.type, outcome, receivedAt: deps.ledger.now() },
    deps.receiptTtlSeconds,
  );
  logger.info("stripe event applied", { outcome });
  // A checkout completion maps its customer to a user (onCheckoutCompleted): events parked for
  // that customer apply now. Only those two types write the mapping, so only they look.
  const customer = (event.data.object as { customer?: unknown } | null)?.customer;
  if (MAPS_CUSTOMER.has(event.type) && typeof customer === "string") {
    await replayParkedEvents(deps, { customer, reason: "unknown_customer" });
  }
  return { received: true, eventId: event.id, type: event.type, outcome };
}
