import { beforeAll, describe, expect, it } from "vitest";
import type { BillingAccount } from "../../lib/billing/index.js";
import { auditAccount, authorizeChat, listHistory, releaseHold } from "../../lib/ledger/index.js";
import { runSweep } from "../../lib/sweep/run-sweep.js";
import { createDynamoScheduleStore } from "../../lib/sweep/dynamo-schedule-store.js";
import { type BillingFixture, billingFixture, paidInvoiceEvent, subscribeAndPay, T0 } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent } from "../helpers/stripe-events.js";
import { budgetMs, random, recordOutcomeOf, recordSection, SEED, SIGNUP_BONUS, scale, opsAuditAll } from "./harness.js";

/**
 * Plan-change storm: paying users change plan up and down, one to four times, at random points
 * of their billing period — its first minute, its last hour, its last second, anywhere — monthly
 * and annual (whose allowances the sweep grants month by month meanwhile), through the real
 * change-plan route against the loopback Stripe server (which prorates like Stripe from the
 * instant we send). The webhooks each change makes (the subscription update, the proration
 * invoice's `invoice.paid`) are delivered at once or only at the end, some twice, in any order.
 * After every step a chat must still be admitted at once (no lockout), and at the end every
 * balance must be what an independent model computes: the first invoice's allowance, each paid
 * upgrade's difference prorated by the share of its allowance period left (seconds, floored),
 * and each annual month at what the year's payments paid for it — the annual invoice's plan,
 * plus the difference each paid upgrade bought for the months after its own, whatever the plan
 * is now (a downgrade gives no money back, so it takes no paid month away; an upgrade back to a
 * level the rest of the year has paid for already is not charged again and tops up nothing).
 */
captureLogs();

const rng = random(SEED + 3);
const USERS = scale(16);
const DAY = 86_400;
/** Allowances from the product brief, kept here independently of lib/catalog. */
const ALLOWANCE = { plus: 40_000, pro: 100_000 } as const;
type Plan = keyof typeof ALLOWANCE;
const other = (plan: Plan): Plan => (plan === "plus" ? "pro" : "plus");

/** Start of annual allowance month `m` (calendar months from T0 = 2026-01-01T12:00Z), epoch seconds. */
const monthStart = (m: number) => Date.UTC(2026, m, 1, 12) / 1000;

/** The independent top-up rule: the allowance difference times the share of the period left, floored. */
function expectedTopUp(from: Plan, to: Plan, period: { start: number; end: number }, at: number): number {
  const difference = ALLOWANCE[to] - ALLOWANCE[from];
  if (difference <= 0 || at >= period.end) return 0;
  return Math.floor((difference * (period.end - Math.max(at, period.start))) / (period.end - period.start));
}

type Step = { kind: "change"; at: number } | { kind: "sweep"; at: number; month: number };

interface Story {
  interval: "month" | "year";
  firstPlan: Plan;
  periodEnd: number;
  steps: Step[];
}

function changeInstants(interval: "month" | "year", periodEnd: number): number[] {
  const count = rng.int(1, 4);
  const instants = new Set<number>();
  while (instants.size < count) {
    const [start, end] =
      interval === "month"
        ? [T0, periodEnd]
        : (() => {
            const m = rng.int(0, 11);
            return [monthStart(m), monthStart(m + 1)];
          })();
    const where = rng.pick(["firstMinute", "lastHour", "lastSecond", "anywhere"] as const);
    const chosen = {
      firstMinute: () => start + rng.int(1, 59),
      lastHour: () => end - rng.int(2, 3_599),
      lastSecond: () => end - 1,
      anywhere: () => start + rng.int(60, end - start - 3_600),
    }[where]();
    instants.add(chosen);
  }
  return [...instants].sort((a, b) => a - b);
}

const stories: Story[] = Array.from({ length: USERS }, () => {
  const interval = rng.chance(0.4) ? "year" : "month";
  const periodEnd = interval === "month" ? T0 + rng.pick([28, 30, 31]) * DAY : monthStart(12);
  const steps: Step[] = changeInstants(interval, periodEnd).map((at) => ({ kind: "change", at }));
  if (interval === "year") for (let m = 1; m <= 11; m++) steps.push({ kind: "sweep", at: monthStart(m), month: m });
  // a sweep at a month's start runs before a change in that month's first minute
  steps.sort((a, b) => a.at - b.at || (a.kind === "sweep" ? -1 : 1));
  return { interval, firstPlan: rng.pick(["plus", "pro"] as const), periodEnd, steps };
});

let fx: BillingFixture;
beforeAll(async () => {
  fx = await billingFixture();
});

recordOutcomeOf("plan-changes");

describe("plan-change storm", () => {
  it(
    `${USERS} subscribers change plan at random points of monthly and annual periods: every balance is the prorated model's`,
    async () => {
      const started = performance.now();
      const schedule = createDynamoScheduleStore(fx.client, fx.tableName);
      const counts = { changes: 0, upgrades: 0, freeUpgrades: 0, downgrades: 0, sweeps: 0, webhooks: 0, deferred: 0, duplicates: 0, authorizations: 0 };
      const classes = new Map<string, number>();
      const problems: string[] = [];
      let creditsLost = 0;
      let excess = 0;
      let driftAccounts = 0;

      for (const [index, story] of stories.entries()) {
        fx.stripe.reset();
        fx.clock.value = T0 * 1000;
        const sub = await subscribeAndPay(fx, { plan: story.firstPlan, interval: story.interval, periodEnd: story.periodEnd });
        let plan: Plan = story.firstPlan;
        let expected = SIGNUP_BONUS + ALLOWANCE[plan];
        /** annual: what each payment pays a month, from which scheduled month on */
        const paid: { from: number; monthly: number }[] = [{ from: 1, monthly: ALLOWANCE[plan] }];
        const paidFor = (month: number) => paid.filter((share) => share.from <= month).reduce((sum, share) => sum + share.monthly, 0);
        /** the upgrade entries the ledger must hold: a top-up's credits, or 0 for an annual upgrade that only pays the year's later months */
        const expectedEntries: number[] = [];
        const deferred: unknown[] = [];
        const deliver = async (event: unknown) => {
          const copies = rng.chance(0.25) ? 2 : 1;
          counts.duplicates += copies - 1;
          for (let copy = 0; copy < copies; copy++) {
            if (rng.chance(0.3)) {
              counts.deferred++;
              deferred.push(event);
              continue;
            }
            counts.webhooks++;
            const answer = await fx.deliver(event);
            if (answer.status !== 200) problems.push(`${sub.userId}: webhook ${answer.status} ${JSON.stringify(answer.json)}`);
          }
        };

        for (const step of story.steps) {
          fx.clock.value = step.at * 1000;
          if (step.kind === "sweep") {
            counts.sweeps++;
            await runSweep(fx.deps.ledger, schedule, { remainingMs: () => 600_000, concurrency: 4 });
            expected += story.interval === "year" ? paidFor(step.month) : ALLOWANCE[plan];
          } else {
            const target = other(plan);
            const period =
              story.interval === "month"
                ? { start: T0, end: story.periodEnd }
                : (() => {
                    let m = 0;
                    while (monthStart(m + 1) <= step.at) m++;
                    return { start: monthStart(m), end: monthStart(m + 1) };
                  })();
            const left = period.end - step.at;
            const where = left === 1 ? "last second" : left <= 3_600 ? "last hour" : step.at - period.start < 60 ? "first minute" : "anywhere";
            classes.set(`${story.interval}, ${where}`, (classes.get(`${story.interval}, ${where}`) ?? 0) + 1);
            const upgrade = ALLOWANCE[target] > ALLOWANCE[plan];
            // annual: the month the change falls in, and whether the rest of the year is paid at the target already
            let month = 0;
            while (story.interval === "year" && monthStart(month + 1) <= step.at) month++;
            const charged = upgrade && (story.interval === "month" || paidFor(month + 1) < ALLOWANCE[target]);
            const topUp = charged ? expectedTopUp(plan, target, period, step.at) : 0;
            if (charged && story.interval === "year" && month < 11) paid.push({ from: month + 1, monthly: ALLOWANCE[target] - ALLOWANCE[plan] });
            if (upgrade && !charged) counts.freeUpgrades++;
            const answer = await fx.asUser(fx.fns.subscribe.route, sub.userId, "POST /v1/billing/change-plan", { plan: target });
            counts.changes++;
            if (upgrade) counts.upgrades++;
            else counts.downgrades++;
            const want = { status: upgrade ? "upgraded" : "downgraded", plan: target, creditsAdded: topUp };
            if (answer.status !== 200 || JSON.stringify(answer.json) !== JSON.stringify(want)) {
              problems.push(`${sub.userId} ${where} ${plan}→${target}: ${answer.status} ${JSON.stringify(answer.json)}, model ${JSON.stringify(want)}`);
            }
            expected += topUp;
            if (topUp > 0 || (charged && story.interval === "year" && month < 11)) expectedEntries.push(topUp);
            plan = target;
            const now = structuredClone(fx.stripe.subscriptions.get(sub.subscriptionId)) as Record<string, unknown>;
            await deliver(stripeEvent("customer.subscription.updated", { created: step.at, object: now }));
            if (charged) await deliver(paidInvoiceEvent(fx, now.latest_invoice as string, { created: step.at }));
          }
          // no lockout: a chat is admitted by the first write after every step
          counts.authorizations++;
          try {
            const hold = await authorizeChat(fx.deps.ledger, {
              userId: sub.userId,
              requestId: `after-${step.kind}-${step.at}`,
              model: "anthropic/claude-sonnet-4.5",
              inputTokens: 10,
              maxOutputTokens: 10,
            });
            await releaseHold(fx.deps.ledger, { holdId: hold.holdId });
          } catch (error) {
            problems.push(`${sub.userId}: authorize after ${step.kind} at ${step.at}: ${(error as Error).message}`);
          }
        }
        // the deferred deliveries, late and shuffled (older subscription states after newer ones)
        for (const event of rng.shuffle(deferred)) {
          counts.webhooks++;
          const answer = await fx.deliver(event);
          if (answer.status !== 200) problems.push(`${sub.userId}: late webhook ${answer.status}`);
        }

        const account = (await fx.deps.ledger.store.getAccount(sub.userId)) as BillingAccount;
        creditsLost += Math.max(0, expected - account.balance);
        excess += Math.max(0, account.balance - expected);
        if (account.balance !== expected) problems.push(`${sub.userId} (${index}, ${story.interval}): balance ${account.balance}, model ${expected}`);
        if (account.plan !== plan || account.interval !== story.interval) problems.push(`${sub.userId}: plan ${account.plan}/${account.interval}, model ${plan}/${story.interval}`);
        const audit = await auditAccount(fx.deps.ledger, sub.userId);
        if (!audit.ok) {
          driftAccounts++;
          problems.push(`${sub.userId}: audit ${audit.problems.join("; ")}`);
        }
        const entries = (await listHistory(fx.deps.ledger, { userId: sub.userId, limit: 100 })).entries;
        const upgrades = entries.filter((entry) => entry.reason === "upgrade").map((entry) => entry.amount);
        if (JSON.stringify(upgrades.sort()) !== JSON.stringify(expectedEntries.sort())) {
          problems.push(`${sub.userId}: top-ups ${JSON.stringify(upgrades)}, model ${JSON.stringify(expectedEntries)}`);
        }
        const months = entries.filter((entry) => entry.reason === "allowance").length;
        if (months !== (story.interval === "year" ? 11 : 0)) problems.push(`${sub.userId}: ${months} scheduled allowances`);
      }

      const wallMs = Math.round(performance.now() - started);
      recordSection({
        section: "plan-changes",
        order: 6,
        wallMs,
        counts: { ...counts, users: USERS, ...Object.fromEntries([...classes].map(([name, n]) => [`at:${name}`, n])) },
        rows: [
          {
            check: "Plan-change storm (change-plan and webhook functions, loopback Stripe, sweep)",
            volume:
              `${counts.changes} plan changes (${counts.upgrades} up, ${counts.freeUpgrades} of them back to a level the year had paid, ${counts.downgrades} down) by ${USERS} subscribers at ` +
              `${[...classes].map(([name, n]) => `${n} ${name}`).join(", ")}; ${counts.sweeps} annual month sweeps; ` +
              `${counts.webhooks} webhook deliveries (${counts.deferred} late, ${counts.duplicates} duplicates); ` +
              `${counts.authorizations} authorizations after each step`,
            drift: driftAccounts,
            creditsLost,
            doubleGrants: excess,
            other: problems.length,
            otherLabel: "wrong answers, lockouts, wrong state",
          },
        ],
      });

      expect(problems).toEqual([]);
      // and the operator's own check of the whole table agrees
      const opsAudit = await opsAuditAll(fx.tableName);
      expect({ code: opsAudit.code, err: opsAudit.err }).toEqual({ code: 0, err: [] });
      expect({ driftAccounts, creditsLost, excess }).toEqual({ driftAccounts: 0, creditsLost: 0, excess: 0 });
      // the storm did what it claims: both intervals, every point of a period, upgrades and downgrades
      expect(stories.some((story) => story.interval === "year") && stories.some((story) => story.interval === "month")).toBe(true);
      expect(counts.upgrades).toBeGreaterThan(0);
      expect(counts.downgrades).toBeGreaterThan(0);
      expect(counts.freeUpgrades).toBeGreaterThan(0); // annual up → down → up (or pro → plus → pro) happened
      expect([...classes.keys()].map((name) => name.split(", ")[1])).toEqual(
        expect.arrayContaining(["first minute", "last hour", "last second", "anywhere"]),
      );
    },
    budgetMs(240_000),
  );
});
