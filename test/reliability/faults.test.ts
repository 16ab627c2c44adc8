import { beforeAll, describe, expect, it } from "vitest";
import type { BillingAccount } from "../../lib/billing/index.js";
import { auditAccount, grantCredits } from "../../lib/ledger/index.js";
import { runSweep } from "../../lib/sweep/run-sweep.js";
import { createDynamoScheduleStore } from "../../lib/sweep/dynamo-schedule-store.js";
import { type BillingFixture, billingFixture } from "../helpers/billing.js";
import type { Answer } from "../helpers/events.js";
import { injectRandomFaults } from "../helpers/faults.js";
import { everyModelOnEveryPlan } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { serviceToken, userToken } from "../helpers/tokens.js";
import { type KillSwitch, killable } from "./chaos.js";
import { type Chat, chatRunner, expectedCharge, makeChat } from "./chats.js";
import { budgetMs, pool, random, recordOutcomeOf, recordSection, SEED, scale, SIGNUP_BONUS, opsAuditAll } from "./harness.js";
import { buildWorld, type Delivery, expectedState, prepareStripe } from "./stripe-world.js";
import { buildUnappliable, checkUnappliable, fixUnappliable, prepareUnappliable } from "./unappliable.js";

/**
 * Faults: one business script (gate chats with duplicates and reorders, admin grants, the sweep
 * expiring abandoned holds, a Stripe webhook world, checkouts and portal sessions) is run twice on
 * two fresh tables and two loopback Stripe servers: once without faults, once with DynamoDB
 * throttling, transaction conflicts and writes whose answer was lost (a timeout after the write),
 * Stripe 5xx, Stripe answering too slowly (the SDK times out after Stripe acted) or just slowly,
 * and Lambdas killed between two steps (after the outbox settle before its entry is written, after
 * applying a webhook before its receipt, after Stripe created a checkout session before the
 * marker points at it, after a clawback record before the ledger entry, ...). The callers retry as
 * real ones do: the chat backend on 5xx and retryable 409, Stripe by redelivering, the browser by
 * clicking again. Both runs must end in the same state, and the fault-free one must match the model.
 */
captureLogs();

const runId = `${process.pid}${Date.now().toString(36)}`;
const IN_FLIGHT = 8;

// ---- the script (the same for both runs) -------------------------------------------------------

const scriptRng = random(SEED + 2);
const gateUsers = Array.from({ length: scale(30) }, (_, i) => `flt-${runId}-g${i}`);
const chats: Chat[] = gateUsers.flatMap((userId) =>
  Array.from({ length: scriptRng.int(5, 10) }, (_, i) => makeChat(scriptRng, userId, `c${i}`, { allowOpus: true })),
);
const grants = Array.from({ length: scale(40) }, (_, i) => ({
  userId: scriptRng.pick(gateUsers),
  key: `admin#flt-${i}`,
  amount: scriptRng.int(1, 900),
  copies: scriptRng.chance(0.3) ? 2 : 1,
}));
const { world, deliveries } = buildWorld(scriptRng, { runId, deliveries: scale(300), duplicateRate: 0.25 });
const shoppers = Array.from({ length: scale(10) }, (_, i) => `flt-${runId}-s${i}`);
/** Events that cannot be applied when they arrive (issue 16), from their own random stream so the script's stays as it was. */
const unappliable = buildUnappliable(random(SEED + 7), runId, scale(9));
/** The world's deliveries with the unappliable ones spread among them (the same order in both runs). */
const webhookQueue: Delivery[] = (() => {
  const spread = Math.max(1, Math.floor(deliveries.length / Math.max(1, unappliable.deliveries.length)));
  const queue: Delivery[] = [];
  deliveries.forEach((delivery, index) => {
    queue.push(delivery);
    const extra = index % spread === 0 ? unappliable.deliveries[index / spread] : undefined;
    if (extra) queue.push(extra);
  });
  queue.push(...unappliable.deliveries.slice(Math.ceil(deliveries.length / spread)));
  return queue;
})();

/** Chats are mutated by a run (hold ids); each run gets its own copy. */
const chatsFor = () => chats.map((chat) => ({ ...chat }));

// ---- one run ---------------------------------------------------------------------------------

interface Faults {
  rng: ReturnType<typeof random>;
  dynamo: ReturnType<typeof injectRandomFaults>;
  kills: KillSwitch;
  stripe: { failures: number; slow: number; timedOut: number };
}

interface RunReport {
  surprises: string[];
  retries: number;
  redeliveries: number;
  checkoutAnswers: Record<string, string>;
}

/** One run of the whole script on a fixture; with `faults`, everything fails now and then. */
async function runScript(fx: BillingFixture, faults: Faults | undefined): Promise<RunReport> {
  const report: RunReport = { surprises: [], retries: 0, redeliveries: 0, checkoutAnswers: {} };
  const gate = await import("../../functions/chat-gate.js");
  const service = await serviceToken({ expiresIn: 3_600 });
  if (faults) {
    faults.dynamo.enable();
    faults.kills.enabled = true;
  }

  /** A caller that retries what the contract says may be retried, as long as it takes. */
  async function retrying(send: () => Promise<Answer>, what: string): Promise<Answer> {
    for (let attempt = 0; attempt < 40; attempt++) {
      const answer = await send();
      const retryable = answer.status >= 500 || (answer.status === 409 && answer.json?.error?.retryable === true);
      if (!retryable) return answer;
      report.retries++;
    }
    report.surprises.push(`${what}: still failing after 40 attempts`);
    return send();
  }

  // 1. The chat backend: chats (with duplicates and reorders) and admin grants, 8 at a time.
  const runner = chatRunner({
    call: (routeKey, body) => retrying(() => fx.call(gate.route, { routeKey, body, token: service }), routeKey),
    surprises: report.surprises,
    counts: { duplicates: 0, reordered: 0 },
  });
  const runChats = chatsFor();
  type Task = { chat: Chat } | { grant: (typeof grants)[number] };
  const tasks: Task[] = [...runChats.map((chat) => ({ chat })), ...grants.map((grant) => ({ grant }))];
  const failures = await pool(tasks, IN_FLIGHT, async (task) => {
    if ("chat" in task) return runner.run(task.chat);
    const { grant } = task;
    await Promise.all(
      Array.from({ length: grant.copies }, async () => {
        // an operator's CLI call, retried until it answers
        for (let attempt = 0; ; attempt++) {
          try {
            await grantCredits(fx.deps.ledger, { userId: grant.userId, key: grant.key, amount: grant.amount, bucket: "allowance", reason: "admin" });
            return;
          } catch (error) {
            if (attempt > 40) throw error;
            report.retries++;
          }
        }
      }),
    );
  });
  report.surprises.push(...failures.map((error) => `task failed: ${(error as Error).message}`));

  // 2. Two hours later the sweep expires the abandoned holds (a failed run is simply run again).
  fx.clock.value += 2 * 3_600_000;
  const schedule = createDynamoScheduleStore(fx.client, fx.tableName);
  for (let run = 0; run < 30; run++) {
    const summary = await runSweep(fx.deps.ledger, schedule, { remainingMs: () => 600_000, concurrency: 4 }).catch(() => undefined);
    if (summary && summary.due === 0) break;
  }
  const late = await pool(
    runChats.filter((chat) => chat.kind === "abandoned"),
    IN_FLIGHT,
    (chat) => runner.runLate(chat),
  );
  report.surprises.push(...late.map((error) => `late task failed: ${(error as Error).message}`));

  // 3. Stripe delivers the webhook world, shuffled and duplicated; what fails is redelivered.
  let queue: Delivery[] = [...webhookQueue];
  for (let round = 0; queue.length && round < 40; round++) {
    const batch = queue;
    queue = [];
    await pool(batch, IN_FLIGHT, async (delivery) => {
      if (faults) stripeTrouble(fx, faults);
      const payload = JSON.stringify(delivery.event);
      const answer = await fx.deliver(payload);
      if (answer.status >= 500) {
        report.redeliveries++;
        queue.push(delivery);
      } else if (answer.status !== 200) {
        report.surprises.push(`webhook ${delivery.event.type}: ${answer.status} ${JSON.stringify(answer.json)}`);
      }
    });
  }
  if (queue.length) report.surprises.push(`${queue.length} deliveries never succeeded`);

  // 4. Shoppers: a subscription checkout, a pack checkout clicked twice, then the portal.
  for (const userId of shoppers) {
    const token = await userToken(userId, { expiresIn: 3_600 });
    const click = async (route: "subscribe" | "portal", routeKey: string, body?: unknown): Promise<Answer> => {
      for (let attempt = 0; attempt < 40; attempt++) {
        if (faults) stripeTrouble(fx, faults);
        const answer = await fx.call(fx.fns[route].route, { routeKey, token, ...(body === undefined ? {} : { body }) });
        if (answer.status < 500 && !(answer.status === 409 && answer.json.error.reason === "CHECKOUT_PENDING" && !answer.json.error.checkoutUrl)) {
          return answer;
        }
        // No answer, or a checkout still starting: the user waits a little and clicks again.
        report.retries++;
        fx.clock.value += 20_000;
      }
      report.surprises.push(`${userId} ${routeKey}: never answered`);
      return { status: 0, headers: {}, json: undefined };
    };
    const subscribe = await click("subscribe", "POST /v1/billing/subscribe", { plan: "plus" });
    const pack = await click("subscribe", "POST /v1/billing/checkout", { pack: "pro" });
    const again = await click("subscribe", "POST /v1/billing/checkout", { pack: "pro" });
    const portal = await click("portal", "POST /v1/billing/portal");
    // The first answer may have been lost to a fault: a 409 naming the pending checkout is the same outcome.
    const outcome = (answer: Answer) =>
      answer.status === 200 || (answer.status === 409 && answer.json?.error?.checkoutUrl) ? "checkout url" : `${answer.status}`;
    report.checkoutAnswers[userId] = [outcome(subscribe), outcome(pack), again.status === 409 && again.json.error.checkoutUrl ? "409 with url" : `${again.status}`, `${portal.status}`].join(", ");
  }

  if (faults) {
    faults.dynamo.disable();
    faults.kills.enabled = false;
  }
  return report;
}

/** Stripe trouble before a call that may reach Stripe: a 500, an answer too slow for the SDK, or just slow. */
function stripeTrouble(fx: BillingFixture, faults: Faults) {
  const roll = faults.rng.next();
  if (roll < 0.06) fx.stripe.failNext({ status: 500 });
  else if (roll < 0.09) fx.stripe.delayNext(700);
  else if (roll < 0.12) fx.stripe.delayNext(60);
}

// ---- the state that must be the same --------------------------------------------------------

const isClaw = (reason: string) => reason === "refund" || reason === "dispute";
const normalKey = (key: string) => (key.startsWith("settle#") ? key.split("#").slice(0, 2).join("#") : key);

async function snapshot(fx: BillingFixture, userIds: string[]) {
  const state: Record<string, unknown> = {};
  const audits: string[] = [];
  await pool(userIds, 8, async (userId) => {
    const audit = await auditAccount(fx.deps.ledger, userId);
    if (!audit.ok) audits.push(`${userId}: ${audit.problems.join("; ")}`);
    const account = (await fx.deps.ledger.store.getAccount(userId)) as BillingAccount | undefined;
    const entries = await fx.deps.ledger.store.allEntries(userId);
    state[userId] = {
      balance: account?.balance,
      available: account?.available,
      openHolds: Object.keys(account?.holds ?? {}).length,
      outbox: Object.keys(account?.outbox ?? {}).length,
      allowanceBase: account?.allowanceBase,
      purchasedBase: account?.purchasedBase,
      spent: account?.spent,
      plan: account?.plan,
      interval: account?.interval,
      subscription: account?.subscription
        ? { id: account.subscription.id, status: account.subscription.status, priceId: account.subscription.priceId, cancel: account.subscription.cancelAtPeriodEnd }
        : null,
      paymentFailedAt: account?.paymentFailedAt ?? null,
      customer: account?.stripeCustomerId !== undefined,
      pendingCheckout: account?.pendingCheckout ? Boolean(account.pendingCheckout.url) : null,
      pendingPackCheckout: account?.pendingPackCheckout ? Boolean(account.pendingPackCheckout.url) : null,
      // Refunds and disputes of one charge split what they take by arrival order (a fact that
      // finds nothing left writes no entry); what they take together does not depend on it.
      entries: entries.filter((entry) => !isClaw(entry.reason)).map((entry) => `${normalKey(entry.key)} ${entry.amount}`).sort(),
      clawedByCharge: Object.fromEntries(
        [...Map.groupBy(entries.filter((entry) => isClaw(entry.reason)), (entry) => String(entry.refs.charge))]
          .map(([charge, list]) => [charge, list.reduce((sum, entry) => sum + entry.amount, 0)] as const)
          .sort(),
      ),
    };
  });
  // every delivered event was applied (a receipt) or parked (a stranger's: no customer we know), never lost
  const strangers = new Set(world.noise.map((event) => event.id as string));
  const unaccounted = await Promise.all(
    deliveries.map(async (delivery) => {
      if (await fx.billing.store.getReceipt(delivery.event.id)) return false;
      const record = await fx.billing.store.getParkedEvent(delivery.event.id);
      return !(record?.status === "parked" && strangers.has(delivery.event.id));
    }),
  );
  return { state, audits, missingReceipts: unaccounted.filter(Boolean).length };
}

/**
 * The operator's fix, as often as it takes: under faults a replay (or a dismissal) can fail part
 * way like any other call, and is simply run again (each is idempotent). Returns the attempts.
 */
async function fixUntilDone(fx: BillingFixture, faults: Faults | undefined): Promise<number> {
  for (let attempt = 1; attempt <= 20; attempt++) {
    if (faults) stripeTrouble(fx, faults);
    try {
      await fixUnappliable(fx.billing, unappliable.cases);
      const parked = (await fx.billing.store.listParkedEvents()).filter(
        (event) => event.status === "parked" && unappliable.cases.some((entry) => entry.events.some((candidate) => candidate.id === event.eventId)),
      );
      if (parked.length === 0) return attempt;
    } catch {
      // a fault or a killed step: the operator runs the command again
    }
  }
  throw new Error("the operator's fix never finished");
}

// ---- the test ----------------------------------------------------------------------------------

/** Kill points exercised at least twice in every run (on top of the random kills everywhere). */
const FORCED_KILLS = [
  "ledger.settleToOutbox:after", // the outbox settle: applied, its ledger entry not yet written
  "ledger.release:after",
  "billing.putReceipt:before", // the webhook: applied, no receipt
  "billing.putClaw:after", // a refund: recorded what it takes, the ledger not yet told
  "billing.recordCheckoutSession:before", // checkout: Stripe made the session, the marker does not know it
  "billing.claimCheckout:after",
];

let clean: BillingFixture;
let faulty: BillingFixture;
let faults: Faults;

beforeAll(async () => {
  [clean, faulty] = await Promise.all([
    billingFixture({ stripeTimeoutMs: 400, stripeRetries: 0 }),
    billingFixture({ stripeTimeoutMs: 400, stripeRetries: 0 }),
  ]);
  for (const fx of [clean, faulty]) {
    // chats use opus on every plan: plan entitlements are not this storm's subject
    fx.deps.ledger.catalog = everyModelOnEveryPlan();
    prepareStripe(fx.stripe, world);
    await pool(world.users, 8, (user) => fx.billing.store.putCustomerUser(user.customer, user.userId, 0));
    await prepareUnappliable(fx.billing, unappliable.cases);
  }
  const rng = random(SEED + 3);
  faults = {
    rng,
    dynamo: injectRandomFaults(faulty.client, { rate: 0.03, random: rng.next }),
    kills: { enabled: false, rate: 0.05, random: rng.next, counts: new Map(), forced: new Map(FORCED_KILLS.map((point) => [point, 2])) },
    stripe: { failures: 0, slow: 0, timedOut: 0 },
  };
  faulty.deps.ledger.store = killable("ledger", faulty.deps.ledger.store, {
    reserve: "after",
    commit: "after",
    release: "after",
    settleToOutbox: "after",
    materialize: "after",
    createAccount: "after",
  }, faults.kills);
  faulty.billing.store = killable("billing", faulty.billing.store, {
    putReceipt: "before",
    recordCheckoutSession: "before",
    putClaw: "after",
    putPurchase: "after",
    putWaitingClaw: "after",
    replaceSubscription: "after",
    putExtraSubscription: "after",
    endOtherSubscription: "after",
    linkAccountCustomer: "after",
    markPaymentFailed: "after",
    clearPaymentFailed: "after",
    releaseCheckout: "after",
    claimCheckout: "after",
  }, faults.kills);
});

recordOutcomeOf("faults");

describe("faults: retries and redeliveries converge to the fault-free state", () => {
  it(
    "the same script with and without faults ends in the same state, and the fault-free state is the model's",
    async () => {
      const started = performance.now();
      const cleanReport = await runScript(clean, undefined);
      const faultyReport = await runScript(faulty, faults);
      faults.stripe.failures = faulty.stripe.served.failures;
      // a delayed answer the SDK gave up on (it hung up) is a timeout; the others were only slow
      faults.stripe.timedOut = faulty.stripe.served.abandoned;
      faults.stripe.slow = faulty.stripe.served.delays - faulty.stripe.served.abandoned;

      // the operator's fix (the new price configured, replayed; packless sessions dismissed), then
      // every unappliable event must have ended applied, resolved or dismissed, at the model's balances
      const fixes = await Promise.all([clean, faulty].map((run) => fixUntilDone(run, run === faulty ? faults : undefined)));
      const [cleanUnappliable, faultyUnappliable] = await Promise.all([clean, faulty].map((run) => checkUnappliable(run.billing, unappliable.cases)));

      const users = [...gateUsers, ...world.users.map((user) => user.userId), ...shoppers, ...unappliable.cases.map((entry) => entry.userId)];
      const [expected, actual] = await Promise.all([snapshot(clean, users), snapshot(faulty, users)]);
      const diverging = users.filter((userId) => JSON.stringify(expected.state[userId]) !== JSON.stringify(actual.state[userId]));

      // The fault-free run is what the business facts say.
      const model = new Map<string, number>(gateUsers.map((userId) => [userId, SIGNUP_BONUS]));
      for (const chat of chats) model.set(chat.userId, (model.get(chat.userId) as number) - expectedCharge(chat));
      for (const grant of grants) model.set(grant.userId, (model.get(grant.userId) as number) + grant.amount);
      for (const user of world.users) model.set(user.userId, expectedState(user).balance);
      const offModel = [...model].filter(([userId, balance]) => (expected.state[userId] as { balance?: number })?.balance !== balance);
      let creditsLost = 0;
      let excess = 0;
      for (const [userId, balance] of model) {
        const have = (actual.state[userId] as { balance?: number })?.balance ?? 0;
        creditsLost += Math.max(0, balance - have);
        excess += Math.max(0, have - balance);
      }

      const kills = [...faults.kills.counts.values()].reduce((sum, n) => sum + n, 0);
      const injected = {
        dynamoThrottle: faults.dynamo.counts.throttle,
        dynamoConflict: faults.dynamo.counts.conflict,
        dynamoLostResponse: faults.dynamo.counts.lostResponse,
        stripe5xx: faults.stripe.failures,
        stripeSlow: faults.stripe.slow,
        stripeTimedOut: faults.stripe.timedOut,
        lambdaKilled: kills,
      };
      recordSection({
        section: "faults",
        order: 3,
        wallMs: Math.round(performance.now() - started),
        counts: {
          ...injected,
          accountsCompared: users.length,
          divergingAccounts: diverging.length,
          clientRetries: faultyReport.retries,
          stripeRedeliveries: faultyReport.redeliveries,
          ...Object.fromEntries([...faults.kills.counts].map(([point, n]) => [`kill:${point}`, n])),
        },
        rows: [
          {
            check: "Faults (same script with and without faults, compared)",
            volume:
              `${Object.values(injected).reduce((a, b) => a + b, 0)} faults: DynamoDB ${injected.dynamoThrottle} throttled, ` +
              `${injected.dynamoConflict} transaction conflicts, ${injected.dynamoLostResponse} timeouts after the write; ` +
              `Stripe ${injected.stripe5xx} 5xx, ${injected.stripeSlow} slow, ${injected.stripeTimedOut} timed out after Stripe acted; ` +
              `${kills} Lambdas killed between two steps (${faults.kills.counts.size} kill points); ` +
              `${faultyReport.retries} client retries, ${faultyReport.redeliveries} redeliveries; ` +
              `${unappliable.deliveries.length} deliveries of ${unappliable.cases.length} users' unappliable events, fixed by the operator under faults ` +
              `(${faultyUnappliable?.ended.parkedThenResolved ?? 0} parked then resolved, ${faultyUnappliable?.ended.dismissed ?? 0} dismissed, ` +
              `${faultyUnappliable?.ended.applied ?? 0} applied on arrival); ${users.length} accounts compared`,
            drift: actual.audits.length + expected.audits.length,
            creditsLost,
            doubleGrants: excess,
            other: diverging.length + actual.missingReceipts + faultyReport.surprises.length,
            otherLabel: "accounts diverging from the fault-free run, missing receipts, wrong answers",
          },
        ],
      });

      expect(cleanReport.surprises).toEqual([]);
      expect({ clean: cleanUnappliable?.problems, faulty: faultyUnappliable?.problems, fixAttempts: fixes }).toEqual({
        clean: [],
        faulty: [],
        fixAttempts: [expect.any(Number), expect.any(Number)],
      });
      expect(faultyUnappliable?.ended.parkedThenResolved).toBeGreaterThan(0);
      expect(faultyUnappliable?.ended.dismissed).toBeGreaterThan(0);
      expect(expected.audits).toEqual([]);
      expect(offModel).toEqual([]);
      // every chat of the script ended (settled, released, or expired by the sweep): no hold stays open
      const leftOpen = users.filter((userId) => {
        const state = expected.state[userId] as { openHolds: number; outbox: number };
        return state.openHolds + state.outbox > 0;
      });
      expect(leftOpen).toEqual([]);
      expect(faultyReport.surprises).toEqual([]);
      expect(actual.audits).toEqual([]);
      // and the operator's own check of both whole tables agrees
      for (const run of [clean, faulty]) {
        const opsAudit = await opsAuditAll(run.tableName);
        expect({ code: opsAudit.code, err: opsAudit.err }).toEqual({ code: 0, err: [] });
      }
      expect(diverging.map((userId) => ({ userId, clean: expected.state[userId], faulty: actual.state[userId] }))).toEqual([]);
      expect(faultyReport.checkoutAnswers).toEqual(cleanReport.checkoutAnswers);
      expect({ creditsLost, excess, missingReceipts: actual.missingReceipts }).toEqual({ creditsLost: 0, excess: 0, missingReceipts: 0 });
      // and the faults really happened, of every kind
      for (const [kind, count] of Object.entries(injected)) expect(count, kind).toBeGreaterThan(0);
      for (const point of FORCED_KILLS) expect(faults.kills.counts.get(point) ?? 0, point).toBeGreaterThanOrEqual(2);
    },
    budgetMs(150_000),
  );
});
