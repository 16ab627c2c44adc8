/**
 * The sweep's port to the schedule indexes (lib/sweep/run-sweep.ts reads them through it; the
 * DynamoDB adapter is dynamo-schedule-store.ts).
 */

/** Where the next page of a due index starts: the adapter's own, passed back as it was returned. */
export type DueCursor = Readonly<Record<string, unknown>>;

export type ScheduleIndex = "grantDue" | "holdDue";

export interface DuePage {
  userIds: string[];
  /** where the next page starts; undefined when the shard's due range is exhausted */
  next?: DueCursor;
}

/** Reads the sparse schedule indexes: only accounts that are due are ever returned. */
export interface ScheduleStore {
  shards: string[];
  due(index: ScheduleIndex, shard: string, now: number, limit: number, start?: DueCursor): Promise<DuePage>;
  /** After expiring holds: leave the holdDue index when no hold is open, else move to the earliest expiry. */
  refreshHoldDue(userId: string): Promise<void>;
}
