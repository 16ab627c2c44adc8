import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import { readItem } from "../dynamo/items.js";
import { accountFieldsFromItem, ENTRY_PREFIX, entryFromItem } from "../ledger/dynamo-item.js";
import { ACCOUNT_SK, userIdOfPk } from "../ledger/table-definition.js";
import { TOP_UP_SK } from "../topup/dynamo-topup-store.js";
import type { AutoTopUpState } from "../topup/model.js";
import type { AccountImage, TableChange } from "./model.js";

/**
 * DynamoDB stream records (NEW_AND_OLD_IMAGES) → the ledger's changes, in the record order: the
 * account item's transitions, new ledger entries and the auto top-up item's transitions.
 * Everything else (release markers, billing items, a modified or removed entry, a removed item)
 * means no event and is skipped. Works on a Lambda
 * DynamoDBStreamEvent's records and on the Streams API's (the local poller), which differ only in
 * the type of the creation time.
 */
export interface StreamRecordLike {
  eventName?: string;
  dynamodb?: {
    Keys?: Record<string, unknown>;
    NewImage?: Record<string, unknown>;
    OldImage?: Record<string, unknown>;
    SequenceNumber?: string;
    /** Lambda: epoch seconds; the Streams API: a Date */
    ApproximateCreationDateTime?: number | Date;
  };
}

const image = (item: Record<string, unknown>) => item as Record<string, AttributeValue>;

function accountImage(item: Record<string, unknown>): AccountImage {
  const fields = accountFieldsFromItem(image(item));
  const { pk } = readItem(image(item)) as { pk: string };
  return {
    userId: fields.userId ?? userIdOfPk(pk),
    plan: fields.plan ?? "free",
    interval: fields.interval ?? "month",
    balance: fields.balance ?? 0,
    available: fields.available ?? 0,
    seq: fields.seq ?? 0,
    ...(fields.subscription ? { subscription: fields.subscription } : {}),
    ...(fields.paymentFailedAt !== undefined ? { paymentFailedAt: fields.paymentFailedAt } : {}),
    // a billing attribute (its keys are Stripe subscription ids, decoded by readItem)
    ...(readItem(image(item)).endedSubscriptions ? { endedSubscriptions: readItem(image(item)).endedSubscriptions } : {}),
    // auto top-up's attribute (lib/topup/dynamo-topup-store.ts)
    ...(typeof readItem(image(item)).autoTopUpBelow === "number" ? { autoTopUpBelow: readItem(image(item)).autoTopUpBelow } : {}),
    ...(readItem(image(item)).autoTopUpWaiting === true ? { autoTopUpWaiting: true as const } : {}),
  };
}

/** The auto top-up item's state (lib/topup/dynamo-topup-store.ts: `userId`, `version`, `state` stored as a plain map). */
const topUpStateOf = (item: Record<string, unknown>): AutoTopUpState | undefined => {
  const state: unknown = readItem(image(item)).state;
  return typeof state === "object" && state !== null ? (state as AutoTopUpState) : undefined;
};

function creationTime(value: number | Date | undefined): number {
  if (value instanceof Date) return value.getTime();
  return typeof value === "number" ? value * 1000 : 0;
}

export function tableChangesOf(records: readonly StreamRecordLike[]): TableChange[] {
  const changes: TableChange[] = [];
  for (const record of records) {
    const data = record.dynamodb;
    if (!data?.Keys || !data.SequenceNumber) continue;
    const { sk } = readItem(image(data.Keys)) as { sk?: string };
    const position = data.SequenceNumber;
    const at = creationTime(data.ApproximateCreationDateTime);
    if (sk === ACCOUNT_SK && data.NewImage && (record.eventName === "INSERT" || record.eventName === "MODIFY")) {
      changes.push({ kind: "account", position, at, ...(data.OldImage ? { before: accountImage(data.OldImage) } : {}), after: accountImage(data.NewImage) });
    } else if (typeof sk === "string" && sk.startsWith(ENTRY_PREFIX) && record.eventName === "INSERT" && data.NewImage) {
      changes.push({ kind: "entry", position, at, entry: entryFromItem(image(data.NewImage)) });
    } else if (sk === TOP_UP_SK && data.NewImage && (record.eventName === "INSERT" || record.eventName === "MODIFY")) {
      const { pk, userId } = readItem(image(data.NewImage)) as { pk: string; userId?: string };
      const after = topUpStateOf(data.NewImage);
      const before = data.OldImage ? topUpStateOf(data.OldImage) : undefined;
      // an item without a state (never written so by the store) says nothing: skipped, not a poisoned batch
      if (after) changes.push({ kind: "topup", position, at, userId: userId ?? userIdOfPk(pk), ...(before ? { before } : {}), after });
    }
  }
  return changes;
}
