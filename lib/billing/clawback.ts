/**
 * The clawback rule of one charge, as pure functions (no I/O): what Stripe told us about the money
 * of a charge (refunds, disputes, and their reversals), what the payment has granted, and from
 * those the credits its clawbacks should hold now. `refunds.ts` records the facts and moves the
 * ledger to what these functions say.
 *
 * Money returned = the refunds that still stand + the disputes not won, at most what was paid.
 * Credits to hold back = min(round(bought × returned ÷ paid), what the payment has granted so far).
 * Every fact moves the charge's take to that target: a refund or a lost dispute takes what is
 * missing, a failed or canceled refund and a won dispute give back what was taken beyond it.
 */

/** A refund of the charge that failed or was canceled: its money went back to the merchant. */
export interface FailedRefund {
  cents: number;
  /** when the refund was created (epoch s): the charge.refunded events from then on counted it */
  createdAt: number;
  /** when it failed or was canceled (event time, epoch s): Stripe's amount_refunded stops counting it */
  failedAt: number;
}

/** Everything Stripe told us about the money of one charge, kept so any arrival order gives the same state. */
export interface ChargeMoney {
  /** what was paid (smallest currency unit): the basis of the proportion */
  basisCents: number;
  /** the charge's `amount_refunded` in the latest charge.refunded seen (by event time, then amount) */
  refundedCents: number;
  /** that event's time (epoch s); absent on records from before refunds were timed */
  refundedAt?: number;
  /** refund id → a refund that failed or was canceled */
  failedRefunds?: Record<string, FailedRefund>;
  /** dispute id → disputed amount */
  disputes: Record<string, number>;
  /** dispute id → when it closed with the money back to the merchant (won, warning_closed), epoch s */
  reversedDisputes?: Record<string, number>;
}

/** One thing Stripe told us about a charge's money. */
export type MoneyFact =
  /** charge.refunded: the charge's cumulative refunded amount at event time `at` (epoch s) */
  | { kind: "refund"; refundedCents: number; chargeAmount: number; at?: number }
  /** charge.dispute.created, or closed as lost */
  | { kind: "dispute"; disputeId: string; disputedCents: number }
  /** a refund failed or was canceled (charge.refund.updated, refund.failed) */
  | { kind: "refund_reversed"; refundId: string; refundedCents: number; refundCreatedAt: number; reversedAt: number }
  /** a dispute closed won, or an inquiry closed without funds withdrawn */
  | { kind: "dispute_reversed"; disputeId: string; disputedCents: number; reversedAt: number };

/** A fact about a charge's money, with the charge and the payment intent it belongs to. */
export type ClawFact = MoneyFact & { chargeId: string; paymentIntentId: string };

/**
 * The ledger key of a clawback fact (docs/invariants.md, invariant 3): a refund by its charge, the cumulative amount
 * and the event time (after a refund fails, Stripe's cumulative amount goes down and a new refund
 * can bring it back to a value seen before: the time tells the two apart), a dispute by its id,
 * and the reversal of a refund or a dispute by the refund's or the dispute's id.
 */
export function clawFactKey(fact: ClawFact): string {
  switch (fact.kind) {
    case "refund":
      return `refund#${fact.chargeId}#${fact.refundedCents}${fact.at === undefined ? "" : `#${fact.at}`}`;
    case "dispute":
      return `dispute#${fact.disputeId}`;
    case "refund_reversed":
      return `reinstate#${fact.refundId}`;
    case "dispute_reversed":
      return `reinstate#${fact.disputeId}`;
  }
}

/**
 * Is this charge.refunded newer than the one recorded? By event time, then by amount (events share
 * seconds; within one second the larger cumulative amount is the later refund). A record or fact
 * without a time (written before refunds were timed) compares by amount only.
 */
function isNewerObservation(money: ChargeMoney, refundedCents: number, at: number | undefined): boolean {
  if (money.refundedAt === undefined || at === undefined) {
    return refundedCents > money.refundedCents || (refundedCents === money.refundedCents && at !== undefined && money.refundedAt === undefined);
  }
  return at > money.refundedAt || (at === money.refundedAt && refundedCents > money.refundedCents);
}

/**
 * The money state with one more fact. Commutative and idempotent (latest observation, maximum
 * disputed amount, earliest reversal time), so the facts of a charge give the same state in any
 * arrival order and however often each arrives. Returns `money` itself when nothing changed.
 */
export function withMoneyFact<T extends ChargeMoney>(money: T, fact: MoneyFact): T {
  switch (fact.kind) {
    case "refund": {
      const basisCents = money.basisCents > 0 ? money.basisCents : fact.chargeAmount;
      const newer = isNewerObservation(money, fact.refundedCents, fact.at);
      if (!newer && basisCents === money.basisCents) return money;
      const observation = newer ? { refundedCents: fact.refundedCents, refundedAt: fact.at } : {};
      const next = { ...money, basisCents, ...observation };
      if (next.refundedAt === undefined) delete next.refundedAt;
      return next;
    }
    case "dispute": {
      const known = money.disputes[fact.disputeId];
      if (known !== undefined && known >= fact.disputedCents) return money;
      return { ...money, disputes: { ...money.disputes, [fact.disputeId]: fact.disputedCents } };
    }
    case "refund_reversed": {
      const known = money.failedRefunds?.[fact.refundId];
      if (known && known.failedAt <= fact.reversedAt) return money;
      const failed: FailedRefund = { cents: fact.refundedCents, createdAt: fact.refundCreatedAt, failedAt: fact.reversedAt };
      return { ...money, failedRefunds: { ...money.failedRefunds, [fact.refundId]: failed } };
    }
    case "dispute_reversed": {
      const known = money.reversedDisputes?.[fact.disputeId];
      const disputed = money.disputes[fact.disputeId];
      const disputes = disputed === undefined || disputed < fact.disputedCents ? { ...money.disputes, [fact.disputeId]: fact.disputedCents } : money.disputes;
      if (known !== undefined && known <= fact.reversedAt && disputes === money.disputes) return money;
      const at = known === undefined ? fact.reversedAt : Math.min(known, fact.reversedAt);
      return { ...money, disputes, reversedDisputes: { ...money.reversedDisputes, [fact.disputeId]: at } };
    }
  }
}

/**
 * What the charge's refunds still return. Stripe's `amount_refunded` stops counting a refund once
 * it fails or is canceled, so the latest charge.refunded counts exactly the refunds created by its
 * time that had not failed by then; of those, the ones that failed since are no longer returned.
 * (A failed refund whose charge.refunded has not arrived yet is not in it, so it changes nothing.)
 * A record without a time predates every failure we know of: each one counts as failed since.
 */
export function refundsReturning(money: ChargeMoney): number {
  const at = money.refundedAt;
  const failedSince = Object.values(money.failedRefunds ?? {})
    .filter((failed) => at === undefined || (failed.createdAt <= at && at < failed.failedAt))
    .reduce((sum, failed) => sum + failed.cents, 0);
  return Math.max(0, money.refundedCents - failedSince);
}

/** Money that came back to the customer: refunds that stand and disputes not reversed, at most what was paid. */
export function returnedCents(money: ChargeMoney): number {
  const disputed = Object.entries(money.disputes)
    .filter(([disputeId]) => money.reversedDisputes?.[disputeId] === undefined)
    .reduce((sum, [, cents]) => sum + cents, 0);
  return Math.min(money.basisCents, refundsReturning(money) + disputed);
}

/** Credits the money returned stands for: round(bought × returned ÷ paid), at most what was bought. */
export function proportionalCredits(bought: number, money: ChargeMoney): number {
  if (money.basisCents <= 0) return 0;
  return Math.min(bought, Math.round((bought * returnedCents(money)) / money.basisCents));
}

/** Where a charge's payment stands in the ledger. */
export interface ClawPosition {
  /** credits the payment buys: its grant, or twelve monthly allowances for an annual invoice */
  bought: number;
  /** what it has granted so far, counting the scheduled months the schedule budget held back */
  grantedGross: number;
  /** the part of `grantedGross` the schedule budget held back (never in the ledger) */
  withheld: number;
  /** credits this charge's facts moved out of the ledger: takes less give-backs */
  clawedNet: number;
}

/** What the charge's clawbacks hold back now: taken by its entries, plus what the budget kept from the year. */
export function takenOf(position: ClawPosition): number {
  return position.clawedNet + position.withheld;
}

/** What they should hold back: the credits the returned money stands for, as far as the payment has granted them. */
export function targetTake(money: ChargeMoney, position: ClawPosition): number {
  return Math.min(proportionalCredits(position.bought, money), position.grantedGross);
}

/**
 * Credits the next fact moves: positive takes back (a refund, a lost dispute), negative gives
 * back (a failed or canceled refund, a won dispute). The take never exceeds what was bought or
 * granted; a give-back never exceeds what was taken (the target is never below zero).
 */
export function clawAdjustment(money: ChargeMoney, position: ClawPosition): number {
  return targetTake(money, position) - takenOf(position);
}

/**
 * What the year's remaining scheduled months may still grant: the year must net what was bought
 * less the credits the returned money stands for, and it has netted `granted − clawed` so far.
 * At most the months left (no budget needed) and never below zero.
 */
export function scheduleBudgetCredits(money: ChargeMoney, position: ClawPosition): number {
  const netSoFar = position.grantedGross - position.withheld - position.clawedNet;
  const owed = position.bought - proportionalCredits(position.bought, money) - netSoFar;
  return Math.max(0, Math.min(owed, position.bought - position.grantedGross));
}

/**
 * The budget the year's remaining months need: undefined when they may all grant in full (the
 * returned money is covered by what was taken), so a year without a binding budget keeps none.
 */
export function bindingScheduleBudget(money: ChargeMoney, position: ClawPosition): number | undefined {
  const credits = scheduleBudgetCredits(money, position);
  return credits < position.bought - position.grantedGross ? credits : undefined;
}
