import { z } from "zod";
import { NotFoundError } from "../errors.js";
import { costOfCall } from "../pricing.js";
import type { HoldRecord } from "./account.js";
import type { LedgerDeps } from "./deps.js";
import { decodeHoldId, encodeHoldId, type HoldRef } from "./hold-id.js";
import { untilSettled } from "./retry.js";
import type { AccountCommit, HoldIdentity, LedgerEntry, ReleaseMarker } from "./store.js";
import { parseInput } from "./validation.js";

/** How a hold ended; settle and release both answer with the first outcome forever after. */
export interface HoldOutcome {
  holdId: string;
  status: "settled" | "released" | "expired";
  charged: number;
  released: number;
  balance: number;
}

const holdIdSchema = z.string().min(1).max(1024);

function holdRef(holdId: string): HoldRef {
  const ref = decodeHoldId(parseInput(holdIdSchema, holdId, "holdId"));
  if (!ref) throw new NotFoundError("No such hold");
  return ref;
}

/** The settle entry's key: the hold's identity, so a hold is charged at most once (invariant 3, 5). */
const settleKey = (hold: HoldIdentity) => `settle#${hold.requestId}#${hold.tag}`;

const isSameHold = (hold: HoldRecord | undefined, ref: HoldIdentity): hold is HoldRecord =>
  hold !== undefined && hold.t === ref.tag;

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

/** The settle write: the entry (new key only) and the account (at `seq`, hold still as reserved). */
function settleCommit(
  ref: HoldRef,
  cost: number,
  now: number,
  tokens: { inputTokens: number; outputTokens: number },
  late: boolean,
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
          model: ref.model,
          inputTokens: tokens.inputTokens,
          outputTokens: tokens.outputTokens,
          reserved,
          released,
          requestId: ref.requestId,
          ...(late ? { late: "settled after the hold expired" } : {}),
        },
        createdAt: now,
      },
    ],
    balanceDelta: -cost,
    // The hold's reservation comes back and the true cost goes out; a late settle has no hold left.
    availableDelta: reserved - cost,
    spentDelta: cost,
    ...(late ? {} : { closeHold: { ...ref, reserved: ref.reserved, model: ref.model } }),
  };
}

const settleSchema = z.object({
  holdId: holdIdSchema,
  inputTokens: z.number(),
  outputTokens: z.number(),
});
export type SettleInput = z.infer<typeof settleSchema>;

/**
 * Charges a chat's actual cost and releases the rest of its hold, exactly once (invariant 5). The
 * steady state is one transaction built from the hold id alone. Settling a hold that was released
 * returns the release; settling one the sweep expired still records the true usage (it may take
 * the balance negative, which the gate then refuses until repaid).
 */
export async function settleChat(deps: LedgerDeps, input: SettleInput): Promise<HoldOutcome> {
  const request = parseInput(settleSchema, input);
  let ref = holdRef(request.holdId);
  costOfCall(ref.model, request.inputTokens, request.outputTokens); // validate before any I/O
  let late = false;
  return untilSettled(async () => {
    const cost = costOfCall(ref.model, request.inputTokens, request.outputTokens);
    const commit = settleCommit(ref, cost, deps.now(), request, late);
    const outcome = await deps.store.commit(commit);
    if (outcome.kind === "committed") return settledOutcome(request.holdId, commit.entries[0] as LedgerEntry);
    if (outcome.kind === "duplicate") return firstOutcome(deps, request.holdId, ref);
    const account = outcome.account;
    const hold = account?.holds[ref.requestId];
    if (account && isSameHold(hold, ref)) {
      // The expected state was behind (another entry landed since authorize): retry at the real one.
      ref = { ...ref, seq: account.seq, balance: account.balance, model: hold.m, reserved: hold.a };
      late = false;
      return undefined;
    }
    const entry = await deps.store.getEntry(ref.userId, settleKey(ref));
    if (entry) return settledOutcome(request.holdId, entry);
    const marker = await deps.store.getReleaseMarker(ref);
    if (account && marker?.cause === "expired") {
      late = true;
      ref = { ...ref, seq: account.seq, balance: account.balance };
      return undefined;
    }
    if (marker) return markerOutcome(request.holdId, marker);
    throw new NotFoundError("No such hold");
  });
}

async function firstOutcome(deps: LedgerDeps, holdId: string, ref: HoldIdentity): Promise<HoldOutcome> {
  const entry = await deps.store.getEntry(ref.userId, settleKey(ref));
  if (entry) return settledOutcome(holdId, entry);
  const marker = await deps.store.getReleaseMarker(ref);
  if (marker) return markerOutcome(holdId, marker);
  throw new NotFoundError("No such hold");
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
  const earlier = async () => ({ outcome: await firstOutcome(deps, holdId, ref), closedNow: false });
  return untilSettled<CloseResult>(async () => {
    const account = await deps.store.getAccount(ref.userId);
    const hold = account?.holds[ref.requestId];
    if (!account || !isSameHold(hold, ref)) return earlier();
    if (!shouldClose(hold)) return "declined";
    const now = deps.now();
    const outcome = await deps.store.release(
      { ...ref, reserved: hold.a },
      { ...ref, released: hold.a, cause, balance: account.balance, at: now },
    );
    if (outcome.kind === "released") {
      return {
        outcome: { holdId, status: cause, charged: 0, released: hold.a, balance: outcome.account.balance },
        closedNow: true,
      };
    }
    if (outcome.kind === "marked") return earlier();
    return undefined;
  });
}

/** Releases a hold without charging (the LLM call failed); exactly once, first outcome after. */
export async function releaseHold(deps: LedgerDeps, input: { holdId: string }): Promise<HoldOutcome> {
  const { holdId } = parseInput(z.object({ holdId: holdIdSchema }).strict(), input);
  const result = await closeWithoutCharge(deps, holdId, holdRef(holdId), "released", () => true);
  if (result === "declined") throw new Error("release is never declined");
  return result.outcome;
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
    if (hold.e > now) continue;
    const ref: HoldRef = {
      userId,
      requestId,
      tag: hold.t,
      seq: account.holdSeq[requestId] ?? 0,
      balance: account.holdBal[requestId] ?? 0,
      model: hold.m,
      reserved: hold.a,
    };
    const result = await closeWithoutCharge(deps, encodeHoldId(ref), ref, "expired", (current) => current.e <= now);
    if (result !== "declined" && result.closedNow) outcomes.push(result.outcome);
  }
  return outcomes;
}
