import * as z from "zod/mini";
import "../zod-locale.js";
import { type BillingInterval, isPlanId, type PlanId, planOf } from "../catalog.js";
import { ValidationError } from "../errors.js";
import { periodIndexAt, periodStart } from "../periods.js";
import type { AccountRecord } from "./account.js";
import type { LedgerDeps } from "./deps.js";
import { ensureAccountOnce } from "./ensure-account.js";
import { untilSettled } from "./retry.js";
import { freeCadence, shardOf } from "./schedule.js";
import type { AccountCommit } from "./store.js";
import { parseInput } from "../validation.js";
import { userIdSchema } from "./validation.js";

const planChangeSchema = z.object({
  userId: userIdSchema,
  plan: z.string().check(z.refine(isPlanId, "unknown plan")),
  interval: z.enum(["month", "year"]),
  /** paid plans: the subscription's current period start (epoch ms); the allowance months count from it */
  periodStart: z.optional(z.number().check(z.int(), z.minimum(0))),
});
export type PlanChange = z.infer<typeof planChangeSchema>;

/** The allowance schedule fields a plan implies (docs/invariants.md, invariant 4), from `now`. */
export function scheduleFor(
  account: Pick<AccountRecord, "userId" | "createdAt" | "plan" | "interval" | "periodAnchor">,
  change: { plan: PlanId; interval: BillingInterval; periodStart?: number },
  now: number,
  deps: Pick<LedgerDeps, "catalog">,
): { set: AccountCommit["set"]; remove: (keyof AccountRecord)[] } {
  const definition = planOf(change.plan, deps.catalog);
  if (!definition.paid) {
    // Back on free: the 30-day schedule anchored at creation resumes from the *next* boundary;
    // the period in progress was covered by the paid plan, so nothing is granted for it.
    const cadence = freeCadence(deps.catalog);
    const index = periodIndexAt(account.createdAt, now, cadence);
    return {
      set: {
        plan: change.plan,
        interval: "month",
        periodAnchor: account.createdAt,
        periodIndex: index,
        nextGrantAt: periodStart(account.createdAt, index + 1, cadence),
        grantShard: shardOf(account.userId),
      },
      remove: [],
    };
  }
  if (!definition.intervals.includes(change.interval)) {
    throw new ValidationError(`plan ${change.plan} is not sold ${change.interval}ly`, "interval");
  }
  if (change.interval === "month") {
    // Monthly paid plans are granted by their paid invoices only: off the sweep's index.
    return { set: { plan: change.plan, interval: "month" }, remove: ["nextGrantAt", "grantShard"] };
  }
  if (change.periodStart === undefined) throw new ValidationError("annual plans need the period start", "periodStart");
  if (account.interval === "year" && planOf(account.plan, deps.catalog).paid && account.periodAnchor === change.periodStart) {
    // Another plan within the same paid year (an upgrade or downgrade keeps Stripe's period): the
    // schedule keeps its place. Re-anchoring at month 0 would make the months already granted due
    // again under keys that exist (the red team's month-long lockout after an annual plan change).
    return { set: { plan: change.plan, interval: "year" }, remove: [] };
  }
  // A new annual period: month 0 is granted by the paid invoice; months 1..11 by the schedule.
  return {
    set: {
      plan: change.plan,
      interval: "year",
      periodAnchor: change.periodStart,
      periodIndex: 0,
      nextGrantAt: periodStart(change.periodStart, 1, { kind: "calendarMonth" }),
      grantShard: shardOf(account.userId),
    },
    remove: [],
  };
}

/**
 * Moves an account to a plan and interval and sets its allowance schedule accordingly. Grants
 * nothing: credits come only from invoices, the schedule and top-ups, each under its own key.
 * Idempotent: applying the same change again writes the same fields.
 */
export async function changePlanSchedule(deps: LedgerDeps, input: PlanChange): Promise<AccountRecord> {
  const change = parseInput(planChangeSchema, input);
  return untilSettled(async () => {
    // inside the loop, so a first-sight change retries the account's creation too
    const account = await ensureAccountOnce(deps, change.userId);
    const { set, remove } = scheduleFor(account, { ...change, plan: change.plan as PlanId }, deps.now(), deps);
    const outcome = await deps.store.commit({
      userId: account.userId,
      expectedSeq: account.seq,
      entries: [],
      balanceDelta: 0,
      availableDelta: 0,
      set,
      remove,
    });
    if (outcome.kind !== "committed") return undefined;
    const updated = { ...account, ...set } as AccountRecord;
    for (const name of remove) delete updated[name];
    return updated;
  });
}
