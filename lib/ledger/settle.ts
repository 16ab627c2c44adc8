import type * as z from "zod/mini";
import { NotFoundError } from "../errors.js";
import { isModelId } from "../catalog.js";
import { checkTokenCounts, costOfCall } from "../pricing.js";
import { type AccountRecord, type HoldIdentity, type HoldRecord, holdRefOf, type LedgerEntry, outboxEntries, type ReleaseMarker } from "./account.js";
import type { LedgerDeps } from "./deps.js";
import { decodeHoldId, encodeHoldId, type HoldRef } from "./hold-id.js";
import { untilSettled } from "./retry.js";
import { shardOf } from "./schedule.js";
import type { AccountCommit } from "./store.js";
import { parseInput } from "../validation.js";
import { holdIdSchema, releaseInputSchema, settleInputSchema } from "./validation.js";
import { ownValue } from "../own-keys.js";

/** How a hold ended; settle and release both answer with the first outcome forever after. */
export interface HoldOutcome {
  holdId: string;
  status: "settled" | "released" | "expired";
  charged: number;
  released: number;
  balance: number;
}

function holdRef(holdId: string): HoldRef {
  const ref = decodeHoldId(parseInput(holdIdSchema, holdId, "holdId"));
  if (!ref) throw new NotFoundError("No such hold");
  return ref;
}

/** The settle entry's key: the hold's identity, so a hold is charged at most once (docs/invariants.md, invariants 3 and 5). */
const settleKey = (hold: HoldIdentity) => `settle#${hold.requestId}#${hold.tag}`;

const isSameHold = (hold: HoldRecord | undefined, ref: HoldIdentity): hold is HoldRecord =>
  hold !== undefined && hold.tag === ref.tag;

function settledOutcome(holdId: string, entry: LedgerEntry): HoldOutcome {
  return {
    holdId,
    status: "settled",
    charged: -entry.amount,
    released: Number(entry.refs.released ?? 0),
    balance: entry.balanceAfter,
  };
}

function markerOutcome(holdId: string, marker: ReleaseMarker): HoldOutcome {
  return { holdId, status: marker.cause, charged: 0, released: marker.released, balance: marker.balance };
}

/**
 * The settle write: the entry (new key only) and the account (at `seq` and `balance`, hold still
 * as reserved). Every value taken from the hold id here is also a condition of this write (seq,
 * balance; tag, reservation and model through `closeHold`), so a forged one only fails the write.
 * A late settle has no hold left: its `model` comes from the release marker, its seq and balance
 * from the account as read.
 */
function settleCommit(
  ref: HoldRef,
  model: string,
  cost: number,
  now: number,
  tokens: { inputTokens: number; outputTokens: number },
  late: boolean,
  usageRefs: UsageRefs = {},
): AccountCommit {
  const reserved = late ? 0 : ref.reserved;
  const released = Math.max(0, reserved - cost);
  return {
    userId: ref.userId,
    expectedSeq: ref.seq,
    entries: [
      {
        userId: ref.userId,
        key: settleKey(ref),
        amount: -cost,
        balanceAfter: ref.balance - cost,
        seq: ref.seq + 1,
        reason: "settle",
        bucket: "allowance",
        refs: {
          model,
          inputTokens: tokens.inputTokens,
          outputTokens: tokens.outputTokens,
          reserved,
          released,
          requestId: ref.requestId,
          ...usageRefs,
          ...(late ? { late: "settled after the hold expired" } : {}),
        },
        createdAt: now,
      },
    ],
    expectedBalance: ref.balance,
    balanceDelta: -cost,
    // The hold's reservation comes back and the true cost goes out; a late settle has no hold left.
    availableDelta: reserved - cost,
    spentDelta: cost,
    ...(late ? {} : { closeHold: { ...ref, reserved: ref.reserved, model: ref.model } }),
  };
}

export type SettleInput = z.infer<typeof settleInputSchema>;

/**
 * What else a settle entry records about the usage it charged, beside the token counts: the proxy
 * (lib/proxy) records cached and reasoning tokens and whether the usage was reported or estimated.
 * Recorded only; the charge is priced from the token counts alone.
 */
export interface UsageRefs {
  usage?: "reported" | "estimated";
  cachedInputTokens?: number;
  reasoningTokens?: number;
}

/**
 * Charges a chat's actual cost and releases the rest of its hold, exactly once (docs/invariants.md, invariant 5).
 *
 * Fast path (steady state): one transaction built from the hold id alone, conditioned on the
 * account still being at the seq the hold was created at. When other entries landed since (a busy
 * account), it does not retry that condition (which would make N concurrent settles cost O(N²)
 * attempts): it switches to the commutative outbox path, which admits every concurrent settle
 * first time. Settling a hold that was released returns the release; settling one the sweep
 * expired still records the true usage (it may take the balance negative, which the gate then
 * refuses until repaid).
 */
export async function settleChat(deps: LedgerDeps, input: SettleInput, usageRefs: UsageRefs = {}): Promise<HoldOutcome> {
  const request = parseInput(settleInputSchema, input);
  const ref = holdRef(request.holdId);
  checkTokenCounts(request.inputTokens, request.outputTokens); // validate before any I/O
  const tokens = { inputTokens: request.inputTokens, outputTokens: request.outputTokens };
  // A model the catalog does not know cannot be the hold's: only the stored hold can say what it is.
  let fastPath = isModelId(ref.model);
  let late: { account: AccountRecord; model: string } | undefined;
  let known: AccountRecord | undefined; // the state a refused write returned, saving a read
  return untilSettled(async () => {
    if (late) {
      const result = await lateSettle(deps, request.holdId, ref, tokens, late.account, late.model, usageRefs);
      if (result === undefined) late = undefined;
      return result;
    }
    if (fastPath) {
      fastPath = false;
      const cost = costOfCall(ref.model, tokens.inputTokens, tokens.outputTokens);
      const commit = settleCommit(ref, ref.model, cost, deps.now(), tokens, false, usageRefs);
      const outcome = await deps.store.commit(commit);
      if (outcome.kind === "committed") return settledOutcome(request.holdId, commit.entries[0] as LedgerEntry);
      if (outcome.kind === "duplicate") return firstOutcome(deps, request.holdId, ref);
      known = outcome.account;
    }
    const account = known ?? (await deps.store.getAccount(ref.userId));
    known = undefined;
    const hold = ownValue(account?.holds, ref.requestId);
    if (account && isSameHold(hold, ref)) return settleViaOutbox(deps, request.holdId, ref, hold, tokens, usageRefs);
    const ending = await firstEnding(deps, request.holdId, ref);
    if (ending?.outcome.status === "expired" && ending.marker?.model && ending.marker.releasedByCallerAt === undefined && account) {
      late = { account, model: ending.marker.model };
      return undefined;
    }
    if (ending) return ending.outcome;
    throw new NotFoundError("No such hold");
  });
}

function settleRefs(
  ref: HoldRef,
  hold: Pick<HoldRecord, "reserved" | "model">,
  cost: number,
  tokens: { inputTokens: number; outputTokens: number },
  usageRefs: UsageRefs,
) {
  return {
    model: hold.model,
    inputTokens: tokens.inputTokens,
    outputTokens: tokens.outputTokens,
    reserved: hold.reserved,
    released: Math.max(0, hold.reserved - cost),
    requestId: ref.requestId,
    ...usageRefs,
  };
}

/** The contended path: one commutative write into the account's outbox, then the entry itself. */
async function settleViaOutbox(
  deps: LedgerDeps,
  holdId: string,
  ref: HoldRef,
  hold: HoldRecord,
  tokens: { inputTokens: number; outputTokens: number },
  usageRefs: UsageRefs,
): Promise<HoldOutcome | undefined> {
  const cost = costOfCall(hold.model, tokens.inputTokens, tokens.outputTokens);
  const applied = await deps.store.settleToOutbox({
    hold: { ...ref, reserved: hold.reserved, model: hold.model },
    key: settleKey(ref),
    cost,
    refs: settleRefs(ref, hold, cost, tokens, usageRefs),
    now: deps.now(),
    holdShard: shardOf(ref.userId),
  });
  if (applied.kind === "stale") return undefined; // the hold closed meanwhile: look again
  await deps.store.materialize(ref.userId, [applied.entry]);
  return settledOutcome(holdId, applied.entry);
}

/**
 * Settles a hold the sweep already expired: no reservation left, the true usage is still charged,
 * priced by the model its release marker recorded (never the hold id's).
 */
async function lateSettle(
  deps: LedgerDeps,
  holdId: string,
  ref: HoldRef,
  tokens: { inputTokens: number; outputTokens: number },
  account: AccountRecord,
  model: string,
  usageRefs: UsageRefs,
): Promise<HoldOutcome | undefined> {
  const at = { ...ref, seq: account.seq, balance: account.balance };
  const commit = settleCommit(at, model, costOfCall(model, tokens.inputTokens, tokens.outputTokens), deps.now(), tokens, true, usageRefs);
  // ...and only while the caller has not released it since (a release after expiry stands)
  const outcome = await deps.store.commit({ ...commit, markerNotReleased: ref });
  if (outcome.kind === "committed") return settledOutcome(holdId, commit.entries[0] as LedgerEntry);
  if (outcome.kind === "duplicate") return firstOutcome(deps, holdId, ref);
  return undefined;
}

/** How the hold ended, if it did: its settle entry (written or still in the outbox) or its release. */
async function firstOutcome(deps: LedgerDeps, holdId: string, ref: HoldIdentity): Promise<HoldOutcome | undefined> {
  return (await firstEnding(deps, holdId, ref))?.outcome;
}

/** `firstOutcome`, with the release marker when the hold was released or expired. */
async function firstEnding(
  deps: LedgerDeps,
  holdId: string,
  ref: HoldIdentity,
): Promise<{ outcome: HoldOutcome; marker?: ReleaseMarker } | undefined> {
  const key = settleKey(ref);
  const entry = await deps.store.getEntry(ref.userId, key);
  if (entry) return { outcome: settledOutcome(holdId, entry) };
  const account = await deps.store.getAccount(ref.userId);
  const pending = account ? outboxEntries(account).find((candidate) => candidate.key === key) : undefined;
  if (pending) {
    await deps.store.materialize(ref.userId, [pending]);
    return { outcome: settledOutcome(holdId, pending) };
  }
  // A concurrent copy may have moved the entry from the outbox into the ledger (one transaction)
  // between our two reads, so both missed it: read the entry once more before calling it unsettled.
  const materialized = await deps.store.getEntry(ref.userId, key);
  if (materialized) return { outcome: settledOutcome(holdId, materialized) };
  const marker = await deps.store.getReleaseMarker(ref);
  return marker ? { outcome: markerOutcome(holdId, marker), marker } : undefined;
}

/** Writes out whatever a crash left in an account's outbox (the sweep calls this). */
export async function materializeOutbox(deps: LedgerDeps, userId: string): Promise<number> {
  const account = await deps.store.getAccount(userId);
  const pending = account ? outboxEntries(account) : [];
  if (pending.length) await deps.store.materialize(userId, pending);
  return pending.length;
}

type CloseResult = { outcome: HoldOutcome; closedNow: boolean } | "declined";

/**
 * Closes a hold without charging, recording why. `closedNow` tells whether this call closed it
 * (false: it had already ended, and `outcome` is that first outcome). "declined" when
 * `shouldClose` says no (e.g. the hold has not expired after all).
 */
async function closeWithoutCharge(
  deps: LedgerDeps,
  holdId: string,
  ref: HoldIdentity,
  cause: ReleaseMarker["cause"],
  shouldClose: (hold: HoldRecord) => boolean,
): Promise<CloseResult> {
  const earlier = async () => {
    const outcome = await firstOutcome(deps, holdId, ref);
    if (!outcome) throw new NotFoundError("No such hold");
    return { outcome, closedNow: false };
  };
  return untilSettled<CloseResult>(async () => {
    const account = await deps.store.getAccount(ref.userId);
    const hold = ownValue(account?.holds, ref.requestId);
    if (!account || !isSameHold(hold, ref)) return earlier();
    if (!shouldClose(hold)) return "declined";
    const now = deps.now();
    const outcome = await deps.store.release(
      { ...ref, reserved: hold.reserved },
      { ...ref, released: hold.reserved, model: hold.model, cause, balance: account.balance, at: now },
    );
    if (outcome.kind === "released") {
      return {
        outcome: { holdId, status: cause, charged: 0, released: hold.reserved, balance: outcome.account.balance },
        closedNow: true,
      };
    }
    if (outcome.kind === "marked") return earlier();
    return undefined;
  });
}

/** Releases a hold without charging (the LLM call failed); exactly once, first outcome after. */
export async function releaseHold(deps: LedgerDeps, input: { holdId: string }): Promise<HoldOutcome> {
  const { holdId } = parseInput(releaseInputSchema, input);
  const ref = holdRef(holdId);
  const result = await closeWithoutCharge(deps, holdId, ref, "released", () => true);
  if (result === "declined") throw new Error("release is never declined");
  if (result.outcome.status !== "expired") return result.outcome;
  // The sweep expired it first: the caller's release is recorded, so a later settle charges
  // nothing — unless a late settle already charged it, whose outcome is then the first one.
  const marked = await deps.store.markReleasedAfterExpiry(ref, settleKey(ref), deps.now());
  if (marked === "released") return result.outcome;
  return (await firstOutcome(deps, holdId, ref)) ?? result.outcome;
}

/**
 * Releases every hold of an account whose expiry has passed (the sweep's clean-up of abandoned
 * holds). Returns only the holds this call released, so concurrent sweeps never count one twice.
 */
export async function releaseExpiredHolds(deps: LedgerDeps, userId: string): Promise<HoldOutcome[]> {
  const account = await deps.store.getAccount(userId);
  if (!account) return [];
  const now = deps.now();
  const outcomes: HoldOutcome[] = [];
  for (const [requestId, hold] of Object.entries(account.holds)) {
    if (hold.expiresAt > now) continue;
    const ref = holdRefOf(userId, requestId, hold, account);
    const result = await closeWithoutCharge(deps, encodeHoldId(ref), ref, "expired", (current) => current.expiresAt <= now);
    if (result !== "declined" && result.closedNow) outcomes.push(result.outcome);
  }
  return outcomes;
}
