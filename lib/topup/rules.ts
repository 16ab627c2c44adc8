import {
  type AutoTopUpSettings,
  type AutoTopUpState,
  STALE_IN_FLIGHT_MS,
  TOP_UP_FAILURE_LIMIT,
  type TopUpAttempt,
  type TopUpInFlight,
  type TopUpJob,
  type TopUpOutcome,
} from "./model.js";

/**
 * Auto top-up's rules, each a pure function of the state: whether a threshold crossing starts a
 * top-up, and what an attempt's outcome does to the state. The use cases (lib/topup/run.ts,
 * lib/topup/settings.ts, the webhook) read the state, call a rule, and write its result only if
 * the state is still the one they read (compare-and-swap), so a rule always decides on what is
 * written.
 */

/** The calendar month (UTC) of an instant, "YYYY-MM": the monthly limit's period. */
export const monthOf = (at: number): string => new Date(at).toISOString().slice(0, 7);

/** Top-ups started in the month of `now` (a new month starts from none). */
export const startedIn = (state: AutoTopUpState, now: number): number => (state.month === monthOf(now) ? state.startedThisMonth : 0);

/** Charge attempts in the month of `now`, declined ones included. */
export const attemptsIn = (state: AutoTopUpState, now: number): number => (state.month === monthOf(now) ? (state.attemptsThisMonth ?? 0) : 0);

/**
 * Attempts a month may make: its top-ups, and the failures that turn auto top-up off. Turning it
 * on again clears the failures, so without this a user could have a declining card tried without
 * end (a card-testing pattern banks flag).
 */
export const attemptLimit = (state: AutoTopUpState): number => state.settings.monthlyLimit + TOP_UP_FAILURE_LIMIT;

/** Stream positions are decimal digit strings of any length: compared as integers. */
export const isLaterCrossing = (a: string, b: string | undefined): boolean => b === undefined || BigInt(a) > BigInt(b);

/** Why a crossing starts no top-up. */
export type StartRefusal =
  /** auto top-up is off (by the user, or after TOP_UP_FAILURE_LIMIT failures in a row) */
  | "disabled"
  /** this crossing (or a later one) was already used */
  | "seenCrossing"
  /** another top-up is under way */
  | "inFlight"
  /** the month's limit of top-ups is reached */
  | "monthlyLimit"
  /** the month's limit of attempts (top-ups and failures) is reached */
  | "attemptLimit"
  /** credits arrived since: available is not below the threshold any more */
  | "notBelowThreshold";

export type StartDecision =
  | { kind: "start" }
  /** the top-up this job started (its retry), or one left in flight too long: carry it on, with its own keys */
  | { kind: "resume"; inFlight: TopUpInFlight }
  | { kind: "refuse"; reason: StartRefusal };

/** Whether a threshold crossing starts a top-up now: the one decision every job goes through. */
export function decideStart(state: AutoTopUpState | undefined, job: TopUpJob, available: number, now: number): StartDecision {
  // A top-up that began is carried to its end even if the user turned auto top-up off since:
  // left in flight, its invoice would stay open and the state would never say how it ended.
  const inFlight = state?.inFlight;
  if (inFlight && (inFlight.crossing === job.crossing || now - inFlight.startedAt >= STALE_IN_FLIGHT_MS)) return { kind: "resume", inFlight };
  if (!state?.settings.enabled) return { kind: "refuse", reason: "disabled" };
  if (!isLaterCrossing(job.crossing, state.lastCrossing)) return { kind: "refuse", reason: "seenCrossing" };
  if (inFlight) return { kind: "refuse", reason: "inFlight" };
  if (startedIn(state, now) >= state.settings.monthlyLimit) return { kind: "refuse", reason: "monthlyLimit" };
  if (attemptsIn(state, now) >= attemptLimit(state)) return { kind: "refuse", reason: "attemptLimit" };
  // a top-up paid whose credits have not arrived yet covers the dip: not another charge for it
  if (available + (state.awaiting?.credits ?? 0) >= state.settings.threshold) return { kind: "refuse", reason: "notBelowThreshold" };
  return { kind: "start" };
}

/**
 * The state after a crossing refused for the month's limit: the crossing is used, and the state
 * waits for a later month — the account then carries a flag for the change stream, whose next
 * spend below the threshold in a later month is a job of its own (lib/topup/jobs.ts).
 */
export const limitReached = (state: AutoTopUpState, crossing: string, now: number): AutoTopUpState =>
  state.lastCrossing === crossing && state.waitingSince === monthOf(now) ? state : { ...state, lastCrossing: crossing, waitingSince: monthOf(now), updatedAt: now };

/** The state once a top-up began: in flight, counted against the month, its crossing used. */
export function begin(state: AutoTopUpState, job: TopUpJob, charge: Omit<TopUpInFlight, "seq" | "crossing" | "startedAt">, now: number): AutoTopUpState {
  const seq = state.seq + 1;
  const { waitingSince: _waiting, ...rest } = state;
  return {
    ...rest,
    seq,
    month: monthOf(now),
    startedThisMonth: startedIn(state, now) + 1,
    attemptsThisMonth: attemptsIn(state, now) + 1,
    inFlight: { ...charge, seq, crossing: job.crossing, startedAt: now },
    lastCrossing: job.crossing,
    updatedAt: now,
  };
}

/** A failure counts toward TOP_UP_FAILURE_LIMIT; at the limit auto top-up turns itself off. */
function failed(state: AutoTopUpState): AutoTopUpState {
  const failuresInARow = state.failuresInARow + 1;
  if (failuresInARow < TOP_UP_FAILURE_LIMIT) return { ...state, failuresInARow };
  return { ...state, failuresInARow, settings: { ...state.settings, enabled: false }, disabledReason: "failures" };
}

/** A crossing that could not even begin: the customer has no saved card. A failure, with no charge and no month's count. */
export function noPaymentMethod(state: AutoTopUpState, job: TopUpJob, now: number): AutoTopUpState {
  const seq = state.seq + 1;
  const attempt: TopUpAttempt = { seq, at: now, outcome: "no_payment_method", pack: state.settings.pack };
  const counted = { ...state, month: monthOf(now), startedThisMonth: startedIn(state, now), attemptsThisMonth: attemptsIn(state, now) + 1 };
  return failed({ ...counted, seq, lastCrossing: job.crossing, lastAttempt: attempt, updatedAt: now });
}

/** The result of charging a top-up in flight. */
export interface ChargeResult {
  outcome: Exclude<TopUpOutcome, "no_payment_method">;
  /** none when Stripe refused to make the invoice */
  invoiceId?: string;
  actionUrl?: string;
}

/**
 * The state after the top-up `seq` ended with `result`; unchanged when `seq` is not the one in
 * flight (an outcome recorded already, by the webhook or an earlier retry).
 * - succeeded: failures reset (its credits come from `invoice.paid`);
 * - pending: Stripe took the payment but has not finished it (a bank still processing): not a
 *   failure, counted in the month; `invoice.paid` ends it;
 * - action_required: a failure; the invoice stays open and counted in the month (the customer may still pay it);
 * - declined: a failure; nothing was spent, so it does not count in the month.
 */
export function afterCharge(state: AutoTopUpState, seq: number, result: ChargeResult, now: number): AutoTopUpState {
  const inFlight = state.inFlight;
  if (inFlight?.seq !== seq) return state;
  // A refusal to make an invoice says nothing of one another delivery of the job recorded
  // meanwhile: that one decides how the top-up ends.
  if (result.invoiceId === undefined && inFlight.invoiceId !== undefined) return state;
  const { inFlight: _done, ...rest } = state;
  const attempt: TopUpAttempt = {
    seq,
    at: now,
    outcome: result.outcome,
    ...(result.invoiceId ? { invoiceId: result.invoiceId } : {}),
    pack: inFlight.pack,
    ...(result.actionUrl ? { actionUrl: result.actionUrl } : {}),
  };
  const ended: AutoTopUpState = { ...rest, lastAttempt: attempt, updatedAt: now };
  const awaiting = { seq, credits: inFlight.credits };
  if (result.outcome === "succeeded") return { ...ended, failuresInARow: 0, awaiting };
  if (result.outcome === "pending") return { ...ended, awaiting };
  if (result.outcome === "action_required") return failed(ended);
  const sameMonth = state.month === monthOf(inFlight.startedAt);
  return failed({ ...ended, startedThisMonth: sameMonth ? Math.max(0, state.startedThisMonth - 1) : state.startedThisMonth });
}

/**
 * The state once `invoice.paid` reports the top-up `seq` paid: as a success when it was still in
 * flight (the function died between the charge and its record), when its payment was pending,
 * or when the customer confirmed an invoice that needed them (its failure is then forgiven).
 * Anything else is unchanged.
 */
export function afterPaid(state: AutoTopUpState, seq: number, invoiceId: string, now: number): AutoTopUpState {
  const credited = (next: AutoTopUpState): AutoTopUpState => {
    if (next.awaiting?.seq !== seq) return next;
    const { awaiting: _credited, ...rest } = next;
    return rest;
  };
  if (state.inFlight?.seq === seq) return credited(afterCharge(state, seq, { outcome: "succeeded", invoiceId }, now));
  const last = state.lastAttempt;
  if (last?.seq === seq && (last.outcome === "action_required" || last.outcome === "pending")) {
    // the customer paid what needed them: that failure is forgiven — unless the failures already
    // turned auto top-up off, which stays off with the count that turned it off (one story)
    const forgiven = last.outcome === "action_required" && state.disabledReason === undefined;
    const failuresInARow = forgiven ? Math.max(0, state.failuresInARow - 1) : state.failuresInARow;
    return credited({ ...state, failuresInARow, lastAttempt: { ...last, outcome: "succeeded", at: now }, updatedAt: now });
  }
  const next = credited(state);
  return next === state ? state : { ...next, updatedAt: now };
}

/** A new item's state, before any settings. */
export const emptyState = (settings: AutoTopUpSettings, now: number): AutoTopUpState => ({
  settings,
  seq: 0,
  month: monthOf(now),
  startedThisMonth: 0,
  attemptsThisMonth: 0,
  failuresInARow: 0,
  updatedAt: now,
});

/**
 * The state with the user's settings. Turning auto top-up on again clears the failures that
 * turned it off: the user says the card is fixed. The month's count and a top-up in flight stay.
 */
export function withSettings(state: AutoTopUpState | undefined, settings: AutoTopUpSettings, now: number): AutoTopUpState {
  const current = state ?? emptyState(settings, now);
  const reenabled = settings.enabled && !current.settings.enabled;
  const { disabledReason: _reason, ...rest } = current;
  return {
    ...(reenabled ? rest : current),
    settings,
    ...(reenabled ? { failuresInARow: 0 } : {}),
    updatedAt: now,
  };
}

/**
 * What the account item carries for the change stream (lib/topup/jobs.ts): the threshold while
 * auto top-up is on, and whether a crossing waits for a later month's limit.
 */
export interface AccountMirror {
  below?: number;
  waiting?: true;
}

export function accountMirror(state: AutoTopUpState | undefined): AccountMirror {
  if (!state?.settings.enabled) return {};
  return { below: state.settings.threshold, ...(state.waitingSince !== undefined ? { waiting: true as const } : {}) };
}

export const sameMirror = (a: AccountMirror, b: AccountMirror): boolean => a.below === b.below && a.waiting === b.waiting;
