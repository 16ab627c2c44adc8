import { PACK_IDS, PLAN_IDS } from "../catalog.js";
import { EVENT_TYPES, type EventType } from "../events/model.js";
import { TOP_UP_FAILURE_LIMIT } from "../topup/model.js";

/**
 * The outgoing webhooks (lib/events) in the OpenAPI document's `webhooks`: one operation per
 * event type, the body the app receives and the Standard Webhooks headers it verifies.
 */
type JsonSchema = Record<string, unknown>;

const integer = { type: "integer" } as const;
const text = { type: "string" } as const;
const plan = { type: "string", enum: PLAN_IDS } as const;
const interval = { type: "string", enum: ["month", "year"] } as const;

const place: Record<string, JsonSchema> = {
  userId: { ...text, description: "whose account" },
  seq: { ...integer, description: "the account's seq (count of ledger entries) at the event: per user, order by seq, then position, then order" },
  position: { type: "string", pattern: "^[0-9]+$", description: "the change stream position it was derived from (compare as integers)" },
  order: { ...integer, description: "the event's place among those one change yields (0, 1, …): order by seq, position, then order" },
};

const balance: Record<string, JsonSchema> = {
  available: { ...integer, description: "credits the next chat may spend (balance minus open holds)" },
  threshold: { ...integer, description: "the threshold crossed, in credits" },
  plan,
};

/** topup.*: the item they come from (auto top-up's) does not hold the account's seq, so `seq` is the top-up's. */
const topUpSeq: JsonSchema = {
  ...integer,
  description: "the top-up's sequence number (1, 2, … per user; not the account's seq): order one user's topup.* events by seq, then position, then order",
};
const pack = { type: "string", enum: PACK_IDS, description: "the credit pack the top-up buys (lib/catalog.ts)" } as const;
const invoiceId = { type: ["string", "null"], description: "the top-up's Stripe invoice (null: none was made)" } as const;
const failuresInARow = {
  ...integer,
  description: `failed top-ups in a row, this one included (auto top-up turns itself off at ${TOP_UP_FAILURE_LIMIT})`,
} as const;

const DATA: Record<EventType, { description: string; properties: Record<string, JsonSchema> }> = {
  "credits.low": { description: "available fell below the plan's low threshold (lib/catalog.ts lowThreshold); once per crossing", properties: balance },
  "credits.depleted": { description: "available fell below the cheapest possible call; once per crossing", properties: balance },
  "credits.recovered": { description: "available is back at or above the low threshold after credits.low or credits.depleted", properties: balance },
  "credits.granted": {
    description: "credits were added: the allowance, an invoice, a pack, an upgrade top-up or an operator",
    properties: {
      amount: integer,
      reason: { type: "string", enum: ["allowance", "invoice", "pack", "top_up", "admin", "reinstate"] },
      balanceAfter: integer,
      entryKey: { ...text, description: "the ledger entry's idempotency key" },
    },
  },
  "credits.clawed_back": {
    description: "credits were taken back after a refund or a dispute",
    properties: { amount: { ...integer, description: "credits taken (positive)" }, reason: { type: "string", enum: ["refund", "dispute"] }, balanceAfter: integer, entryKey: text },
  },
  "plan.changed": {
    description: "the account's plan or billing interval changed",
    properties: {
      from: { type: "object", required: ["plan", "interval"], properties: { plan, interval } },
      to: { type: "object", required: ["plan", "interval"], properties: { plan, interval } },
    },
  },
  "subscription.payment_failed": {
    description: "a subscription payment failed",
    properties: { subscriptionId: { type: ["string", "null"] }, failedAt: { type: "string", format: "date-time" } },
  },
  "subscription.canceled": { description: "the subscription was canceled (ended)", properties: { subscriptionId: text } },
  "topup.succeeded": {
    description:
      "an auto top-up's invoice was paid (charged off-session, or confirmed by the customer after topup.action_required); once per top-up. Its credits arrive as credits.granted (reason pack)",
    properties: { seq: topUpSeq, pack, invoiceId },
  },
  "topup.failed": {
    description: "an auto top-up failed: the card was declined, or the customer has no saved card; once per top-up",
    properties: { seq: topUpSeq, pack, outcome: { type: "string", enum: ["declined", "no_payment_method"] }, invoiceId, failuresInARow },
  },
  "topup.action_required": {
    description: "an auto top-up's payment needs the customer (3-D Secure): the invoice stays open at actionUrl; once per top-up",
    properties: {
      seq: topUpSeq,
      pack,
      invoiceId,
      actionUrl: { type: ["string", "null"], description: "the hosted invoice page where the customer confirms the payment (null: Stripe gave none)" },
      failuresInARow,
    },
  },
  "topup.disabled": {
    description: "auto top-up turned itself off after failed top-ups in a row, until the user turns it on again",
    properties: { seq: { ...topUpSeq, description: "the sequence number of the top-up whose failure turned it off" }, reason: { type: "string", enum: ["failures"] }, failuresInARow },
  },
};

const header = (description: string, schema: JsonSchema = text) => ({ name: "", in: "header", required: true, description, schema });

/** `webhooks` of the document: what creditgate POSTs to APP_WEBHOOK_URL. */
export function webhookOperations(): Record<string, JsonSchema> {
  const parameters = [
    { ...header("the event's id: the same on every redelivery of one fact"), name: "webhook-id" },
    { ...header("when this attempt was signed, epoch seconds", { type: "string", pattern: "^[0-9]+$" }), name: "webhook-timestamp" },
    { ...header("Standard Webhooks signature(s): v1,<base64 HMAC-SHA256 of id.timestamp.body> with the whsec_ secret"), name: "webhook-signature" },
  ];
  return Object.fromEntries(
    EVENT_TYPES.map((type) => {
      const data = DATA[type];
      return [
        type,
        {
          post: {
            operationId: `webhook_${type.replace(/\W/g, "_")}`,
            summary: type,
            description: `${data.description}. Signed with Standard Webhooks; delivered at least once (retried with backoff for up to 3 days): deduplicate by id. See docs/webhooks.md.`,
            tags: ["webhooks"],
            parameters,
            requestBody: {
              required: true,
              content: {
                "application/json": {
                  schema: {
                    type: "object",
                    required: ["id", "type", "timestamp", "data"],
                    properties: {
                      id: { type: "string", pattern: "^evt_[0-9a-f]{32}$" },
                      type: { type: "string", const: type },
                      timestamp: { type: "string", format: "date-time" },
                      data: { type: "object", required: [...new Set(["userId", "seq", "position", "order", ...Object.keys(data.properties)])], properties: { ...place, ...data.properties } },
                    },
                  },
                },
              },
            },
            responses: { "200": { description: "any 2xx: delivered; anything else, or no answer within the timeout: retried" } },
          },
        },
      ];
    }),
  );
}
