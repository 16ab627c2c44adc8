import type { BillingInterval, PackId, PlanId } from "../catalog.js";
import type { AccountRecord, LedgerEntry } from "../ledger/account.js";
import type { AutoTopUpState, TopUpOutcome } from "../topup/model.js";

/**
 * The events creditgate tells the app about (signed webhooks, docs/webhooks.md), and what they
 * are derived from: the table's change stream, read as changes of the ledger's model. Nothing here
 * knows DynamoDB; lib/events/dynamo-stream-records.ts turns stream records into `TableChange`s.
 */

export const EVENT_TYPES = [
  "credits.low",
  "credits.depleted",
  "credits.recovered",
  "credits.granted",
  "credits.clawed_back",
  "plan.changed",
  "subscription.payment_failed",
  "subscription.canceled",
  "topup.succeeded",
  "topup.failed",
  "topup.action_required",
  "topup.disabled",
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** The test event `ops webhooks send-test` sends: never derived from the stream. */
export const TEST_EVENT_TYPE = "webhook.test";

/** The account fields an event is judged on (the account item's old or new image). */
export type AccountImage = Pick<AccountRecord, "userId" | "plan" | "interval" | "balance" | "available" | "seq"> &
  Partial<Pick<AccountRecord, "subscription" | "paymentFailedAt">> & {
    /** subscription id → when it ended, for subscriptions that ended while not (or no longer) the current one (billing's `endedSubscriptions`) */
    endedSubscriptions?: Readonly<Record<string, number>>;
    /** auto top-up's threshold while it is on (lib/topup): a fall of `available` below it starts a top-up */
    autoTopUpBelow?: number;
    /** a crossing refused for the month's limit waits for a later month (lib/topup) */
    autoTopUpWaiting?: true;
  };

/**
 * One change of the table, in stream order. `position` is the stream record's sequence number
 * (decimal digits): the same record redelivered has the same position, so everything derived
 * from it has the same id. `at` is the record's approximate creation time (epoch ms).
 */
export type TableChange =
  | { kind: "account"; position: string; at: number; before?: AccountImage; after: AccountImage }
  | { kind: "entry"; position: string; at: number; entry: LedgerEntry }
  /** the user's auto top-up item (lib/topup) written: its state before (none: the item is new) and after */
  | { kind: "topup"; position: string; at: number; userId: string; before?: AutoTopUpState; after: AutoTopUpState };

/** What every event's data carries: whose, and where in that user's history (ordering, docs/webhooks.md). */
export interface EventPlace {
  userId: string;
  /** the account's seq (count of ledger entries) the event happened at: per user, order by it, then by `position` (topup.*: the top-up's seq, `TopUpEventPlace`) */
  seq: number;
  /** the change stream position it was derived from (decimal digits, compare as integers) */
  position: string;
  /** the event's place among those one change yields (0, 1, …): orders e.g. credits.low before credits.depleted of one write */
  order: number;
}

/** `reinstate`: credits a clawback took, given back (a dispute won, a refund that failed) */
export type GrantReason = "allowance" | "invoice" | "pack" | "top_up" | "admin" | "reinstate";

/**
 * Where a top-up event is: like `EventPlace`, but `seq` is the top-up's sequence number (1, 2, …
 * per user; lib/topup/model.ts), not the account's: the auto top-up item that the event is derived
 * from does not hold the account's seq. Order one user's topup.* events by (seq, position, order);
 * they share no state with the credits.* events, whose seq counts something else.
 */
export type TopUpEventPlace = EventPlace;

export type EventData = {
  "credits.low": EventPlace & { available: number; threshold: number; plan: PlanId };
  "credits.depleted": EventPlace & { available: number; threshold: number; plan: PlanId };
  "credits.recovered": EventPlace & { available: number; threshold: number; plan: PlanId };
  "credits.granted": EventPlace & { amount: number; reason: GrantReason; balanceAfter: number; entryKey: string };
  "credits.clawed_back": EventPlace & { amount: number; reason: "refund" | "dispute"; balanceAfter: number; entryKey: string };
  "plan.changed": EventPlace & { from: { plan: PlanId; interval: BillingInterval }; to: { plan: PlanId; interval: BillingInterval } };
  "subscription.payment_failed": EventPlace & { subscriptionId: string | null; failedAt: string };
  "subscription.canceled": EventPlace & { subscriptionId: string };
  /** a top-up's invoice was paid (its credits arrive as credits.granted, reason pack, from `invoice.paid`) */
  "topup.succeeded": TopUpEventPlace & { pack: PackId; invoiceId: string | null };
  /** a top-up failed: the card was declined, or there is no saved card (then no invoice exists) */
  "topup.failed": TopUpEventPlace & { pack: PackId; outcome: Extract<TopUpOutcome, "declined" | "no_payment_method">; invoiceId: string | null; failuresInARow: number };
  /** a top-up's payment needs the customer (3-D Secure): the invoice stays open at `actionUrl` */
  "topup.action_required": TopUpEventPlace & { pack: PackId; invoiceId: string | null; actionUrl: string | null; failuresInARow: number };
  /** auto top-up turned itself off after TOP_UP_FAILURE_LIMIT failures in a row (`seq`: the last attempt's) */
  "topup.disabled": TopUpEventPlace & { reason: "failures"; failuresInARow: number };
};

/** One event, as the app receives it (the webhook's JSON body; its `id` is also the webhook-id header). */
export type WebhookEvent = {
  [T in EventType]: {
    /** stable: derived from the fact, so every redelivery of one fact carries the same id */
    id: string;
    type: T;
    /** when the change happened (the stream record's time), ISO 8601 */
    timestamp: string;
    data: EventData[T];
  };
}[EventType];
