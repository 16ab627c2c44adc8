import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditAccount, authorizeChat, grantCredits, settleChat } from "../../lib/ledger/index.js";
import { isLaterCrossing } from "../../lib/topup/rules.js";
import { customerOf, useBillingFixture } from "../helpers/billing.js";
import { type EventsPipeline, eventually, startEventsPipeline } from "../helpers/events-pipeline.js";
import { SONNET } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { invoiceEvent } from "../helpers/stripe-official.js";
import { budgetMs, modelCost, opsAuditAll, pool, random, recordOutcomeOf, recordSection, SEED, scale, SIGNUP_BONUS } from "./harness.js";

/**
 * Auto top-up storm: 20 users (200 in heavy mode), each with a saved card, auto top-up on with a
 * random threshold, pack and monthly limit, and a seeded script of concurrent spends (admin
 * deductions and gate authorizations, some sent twice) and grants (admin grants, settles) that
 * take its available credits above and below its threshold a few times. The change stream, the
 * top-up queue and its job runner run as `npm start` wires them (test/helpers/events-pipeline.ts);
 * the loopback Stripe server answers each user's pay calls from a seeded schedule (paid, declined,
 * needs the customer, and for some users one 5xx, which the queue redelivers to the job after its
 * 30 s visibility timeout). Every invoice the Stripe server holds as paid has its `invoice.paid`
 * delivered, signed, to the webhook: most right away, some twice, some only at the end, out of order.
 *
 * The expected end of every user comes from an independent model of the rules (docs/auto-top-up.md)
 * run over the script alone, never from the system's answers: the crossings the script makes (falls
 * of available from >= threshold to < threshold, and turning it on while below), one top-up per
 * crossing, at most `monthlyLimit` started in the month (declined ones not counted), 3 failures in a
 * row turn it off, a confirmed 3-D Secure invoice forgives its failure. Users run concurrently; each
 * user's next step waits for its last crossing's top-up to end, so its script is deterministic.
 *
 * The test clock stays in January 2026 (the free plan's monthly allowance would otherwise land in
 * February and move the balances), so the monthly limit is exercised within one month.
 */
captureLogs();

const fx = useBillingFixture({ stream: true });
const rng = random(SEED + 7);
const USERS = scale(20);
const runId = `${process.pid}${Date.now().toString(36)}`;

/** The published catalog (docs/billing.md, "Catalog"), not lib/catalog: credits per pack. */
const PACK_CREDITS = { starter: 50_000, pro: 200_000 } as const;
type Pack = keyof typeof PACK_CREDITS;
/** docs/auto-top-up.md: failures in a row after which auto top-up turns itself off. */
const FAILURE_LIMIT = 3;

type PayOutcome = "succeeded" | "card_declined" | "requires_action" | "server_error";

interface Grant {
  key: string;
  amount: number;
  copies: number;
}
type DownOp =
  | ({ kind: "deduct" } & Grant)
  | { kind: "authorize"; requestId: string; model: string; inputTokens: number; maxOutputTokens: number; outputTokens: number };

/** What the model says one crossing does. */
interface CrossingPlan {
  /** the change stream queues a job (auto top-up is on) */
  job: boolean;
  /** the job starts a top-up (not refused for the month's limit) */
  attempt: boolean;
  /** a 5xx first: the job is redelivered after the queue's visibility timeout */
  serverError: boolean;
  outcome?: Exclude<PayOutcome, "server_error">;
  /** the customer confirms a 3-D Secure invoice on its hosted page right after the attempt */
  confirm: boolean;
  /** when the paid invoice's `invoice.paid` is delivered: right away or at the end of the storm */
  delivery: "now" | "late";
  /** 2: a second copy of the event, delivered at once or at the end */
  copies: number;
  duplicateLate: boolean;
}

/** `available`: what the model says the user has once the step (and its top-up) is done */
type Step = ({ kind: "up"; grants: Grant[] } | { kind: "down"; ops: DownOp[]; crossing?: CrossingPlan } | { kind: "settle" }) & { available: number };

interface Expected {
  crossings: number;
  attempts: number;
  payAttempts: number;
  charges: number;
  refusedByLimit: number;
  enabled: boolean;
  failures: number;
  started: number;
  balance: number;
}

interface UserPlan {
  index: number;
  userId: string;
  settings: { enabled: true; threshold: number; pack: Pack; monthlyLimit: number };
  /** turning it on while below the threshold is the first crossing */
  enableCrossing?: CrossingPlan;
  steps: Step[];
  /** the loopback server's answers to this customer's pay calls, in order */
  outcomes: PayOutcome[];
  expected: Expected;
}

/** The script of one user and, from it alone, what the rules make of it. */
function planUser(index: number): UserPlan {
  const userId = `topup-storm-${runId}-${index}`;
  const threshold = rng.int(1, 30) * 500;
  const pack = rng.pick(["starter", "pro"] as const);
  const monthlyLimit = rng.int(1, 3);
  const credits = PACK_CREDITS[pack];
  /** a 5xx on the first attempt: its redelivery (30 s later) overlaps the rest of the storm */
  const serverErrorAt = rng.chance(0.2) ? 0 : -1;
  const outcomes: PayOutcome[] = [];
  const m = { available: SIGNUP_BONUS, balance: SIGNUP_BONUS, late: 0, enabled: true, failures: 0, started: 0, begun: 0, attempts: 0, payAttempts: 0, charges: 0, crossings: 0, refusedByLimit: 0 };

  function crossing(): CrossingPlan {
    m.crossings++;
    const plan: CrossingPlan = { job: m.enabled, attempt: false, serverError: false, confirm: false, delivery: "now", copies: 1, duplicateLate: false };
    if (!m.enabled) return plan;
    if (m.started >= monthlyLimit) {
      m.refusedByLimit++;
      return plan;
    }
    // at most monthlyLimit + the failure limit attempts a month, declines included
    if (m.begun >= monthlyLimit + FAILURE_LIMIT) return plan;
    // a paid top-up whose credits have not arrived covers the dip (a pack lifts more than any threshold here)
    if (m.late > 0) return plan;
    plan.attempt = true;
    m.started++;
    m.begun++;
    if (m.attempts++ === serverErrorAt) {
      plan.serverError = true;
      outcomes.push("server_error");
      m.payAttempts++;
    }
    const outcome = rng.weighted({ succeeded: 5, card_declined: 2, requires_action: 2 });
    plan.outcome = outcome;
    outcomes.push(outcome);
    m.payAttempts++;
    let paid = false;
    if (outcome === "succeeded") {
      m.failures = 0;
      paid = true;
    } else {
      if (outcome === "card_declined") m.started--; // nothing was spent: not counted in the month
      m.failures++;
      if (m.failures >= FAILURE_LIMIT) m.enabled = false;
      if (outcome === "requires_action" && rng.chance(0.4)) {
        plan.confirm = true;
        // the customer paid it: its failure is forgiven, unless the failures turned auto top-up off
        if (m.enabled) m.failures = Math.max(0, m.failures - 1);
        paid = true;
      }
    }
    if (paid) {
      m.charges++;
      plan.delivery = !plan.confirm && rng.chance(0.3) ? "late" : "now";
      plan.copies = rng.chance(0.3) ? 2 : 1;
      plan.duplicateLate = rng.chance(0.5);
      m.balance += credits;
      if (plan.delivery === "now") m.available += credits;
      else m.late += credits;
    }
    return plan;
  }

  const steps: Step[] = [];
  let holds: (DownOp & { kind: "authorize" })[] = [];
  const settleHolds = () => {
    for (const hold of holds) {
      const reserved = modelCost(hold.model, hold.inputTokens, hold.maxOutputTokens);
      const charged = modelCost(hold.model, hold.inputTokens, hold.outputTokens);
      m.available += reserved - charged;
      m.balance -= charged;
    }
    holds = [];
  };
  const split = (total: number, parts: number, prefix: string): Grant[] => {
    const count = Math.max(1, Math.min(parts, total));
    const cuts = Array.from({ length: count - 1 }, () => rng.int(1, total - 1)).sort((a, b) => a - b);
    const bounds = [0, ...cuts, total];
    return bounds
      .slice(1)
      .map((end, i) => ({ key: `${prefix}-${i}`, amount: end - (bounds[i] as number), copies: rng.chance(0.2) ? 2 : 1 }))
      .filter((grant) => grant.amount > 0);
  };

  const enableCrossing = m.available < threshold ? crossing() : undefined;
  const cycles = rng.int(2, 4);
  for (let cycle = 0; cycle < cycles; cycle++) {
    // up: the open holds settle, then admin grants to above the threshold (sometimes not quite)
    settleHolds();
    const stayBelow = m.available < threshold - 1 && rng.chance(0.2);
    const target = stayBelow ? m.available + rng.int(0, threshold - 1 - m.available) : threshold + rng.int(0, 6_000);
    const grants = target > m.available ? split(target - m.available, rng.int(1, 2), `admin#topup-storm-${userId}-up${cycle}`) : [];
    m.available += grants.reduce((sum, grant) => sum + grant.amount, 0);
    m.balance += grants.reduce((sum, grant) => sum + grant.amount, 0);
    steps.push({ kind: "up", grants, available: m.available });

    // down: concurrent spends, all downward (so at most one crossing, whatever their order)
    const before = m.available;
    const stayAbove = before >= threshold && rng.chance(0.15);
    const floor = stayAbove ? threshold : 0;
    const goal = stayAbove ? rng.int(threshold, before) : before >= threshold ? Math.max(0, threshold - rng.int(1, 4_000)) : rng.int(0, before);
    const total = Math.max(0, before - Math.max(floor, goal));
    if (total === 0) continue;
    const ops: DownOp[] = [];
    let reserved = 0;
    for (let i = rng.int(0, 2); i > 0; i--) {
      const model = rng.pick([SONNET, "openai/gpt-5.2"]); // models the free plan includes
      const inputTokens = rng.int(0, 20_000);
      const maxOutputTokens = rng.int(100, 8_000);
      const cost = modelCost(model, inputTokens, maxOutputTokens);
      if (reserved + cost > total) break;
      reserved += cost;
      const hold = { kind: "authorize" as const, requestId: `storm-${cycle}-${i}`, model, inputTokens, maxOutputTokens, outputTokens: rng.int(0, maxOutputTokens) };
      ops.push(hold);
      holds.push(hold);
    }
    const deducted = total - reserved;
    if (deducted > 0) for (const grant of split(deducted, rng.int(1, 5), `admin#topup-storm-${userId}-down${cycle}`)) ops.push({ kind: "deduct", ...grant });
    m.available -= total;
    m.balance -= deducted;
    const crossed = before >= threshold && m.available < threshold;
    const step: Step = { kind: "down", ops: rng.shuffle(ops), available: m.available };
    if (crossed) step.crossing = crossing();
    step.available = m.available;
    steps.push(step);
  }
  settleHolds();
  steps.push({ kind: "settle", available: m.available });

  return {
    index,
    userId,
    settings: { enabled: true, threshold, pack, monthlyLimit },
    ...(enableCrossing ? { enableCrossing } : {}),
    steps,
    outcomes,
    expected: {
      crossings: m.crossings,
      attempts: m.attempts,
      payAttempts: m.payAttempts,
      charges: m.charges,
      refusedByLimit: m.refusedByLimit,
      enabled: m.enabled,
      failures: m.failures,
      started: m.started,
      balance: m.balance,
    },
  };
}

const plans = Array.from({ length: USERS }, (_, index) => planUser(index));

let pipeline: EventsPipeline;
/** user → the crossings of the top-up jobs that ran to their end */
const jobsDone = new Map<string, string[]>();
beforeAll(async () => {
  pipeline = await startEventsPipeline({
    tableName: fx.tableName,
    topUps: fx.billing,
    onTopUpJobsDone: (jobs) => {
      for (const job of jobs) jobsDone.set(job.userId, [...(jobsDone.get(job.userId) ?? []), job.crossing]);
    },
  });
});
afterAll(() => pipeline?.stop());

recordOutcomeOf("topup-storm");

describe("auto top-up storm", () => {
  it(
    `${USERS} users crossing their thresholds concurrently: every charge, credit and state as the model says`,
    async () => {
      const started = performance.now();
      const problems: string[] = [];
      const counts = { downSteps: 0, spends: 0, authorizations: 0, grants: 0, duplicateCalls: 0, deliveries: 0, duplicateDeliveries: 0, lateDeliveries: 0, confirmed: 0, serverErrors: 0, duplicateRefused: 0 };
      const late: { event: unknown; label: string }[] = [];
      const webhookOutcomes: Record<string, number> = {};
      const customers = new Map<string, string>();

      // setup: a Stripe customer with a saved card; the pay outcomes each customer's calls will get
      await pool(plans, 8, async (plan) => {
        const customer = await customerOf(fx, plan.userId);
        customers.set(plan.userId, customer);
        fx.stripe.savePaymentMethod(customer, { default: true });
        for (const outcome of plan.outcomes) fx.stripe.setPayOutcome(outcome, { customer, times: 1 });
      });

      const topUpOf = async (userId: string) => (await fx.billing.topUps.get(userId))?.state;

      // warm-up, outside the model: the first change of a fresh table takes DynamoDB Local's stream
      // a while to show; one user turned on below its threshold, until its top-up ran
      const warm = `topup-storm-${runId}-warm`;
      fx.stripe.savePaymentMethod(await customerOf(fx, warm), { default: true });
      const warmOn = await fx.asUser(fx.fns.subscribe.route, warm, "PUT /v1/billing/auto-topup", { enabled: true, threshold: 20_000, pack: "starter", monthlyLimit: 1 });
      expect(warmOn.status).toBe(200);
      await eventually(async () => (await topUpOf(warm))?.lastAttempt !== undefined, "the warm-up top-up", 60_000);
      const warmMs = Math.round(performance.now() - started);
      const latencies: number[] = [];

      async function deliver(event: unknown, label: string) {
        counts.deliveries++;
        const answer = await fx.deliver(event);
        if (answer.status !== 200) problems.push(`${label}: invoice.paid answered ${answer.status} ${JSON.stringify(answer.json)}`);
        const outcome = String(answer.json?.outcome);
        webhookOutcomes[outcome] = (webhookOutcomes[outcome] ?? 0) + 1;
        // a pack's credits land on delivery (the model counts on them for the next step), or were there already
        if (!["pack_granted", "pack_already_granted", "duplicate"].includes(outcome)) problems.push(`${label}: invoice.paid outcome ${outcome}`);
      }

      /** Every invoice of the customer Stripe holds as paid gets its invoice.paid, as Stripe sends it. */
      const delivered = new Set<string>();
      async function deliverPaid(plan: UserPlan, crossing: CrossingPlan | undefined) {
        const customer = customers.get(plan.userId) as string;
        // biome-ignore lint/suspicious/noExplicitAny: a Stripe invoice as the server holds it
        const paid = fx.stripe.invoicesOf(customer).filter((invoice: any) => invoice.status === "paid" && !delivered.has(invoice.id));
        for (const invoice of paid) {
          delivered.add(String(invoice.id));
          const event = invoiceEvent(invoice);
          const label = `${plan.userId} ${invoice.id}`;
          const copies = crossing?.copies ?? 1;
          if (crossing?.delivery === "late") {
            counts.lateDeliveries += copies;
            for (let copy = 0; copy < copies; copy++) late.push({ event: copy === 0 ? event : invoiceEvent(invoice), label });
            continue;
          }
          if (copies > 1 && crossing?.duplicateLate) {
            counts.lateDeliveries++;
            counts.duplicateDeliveries++;
            late.push({ event, label }); // the same event again, after everything else
            await deliver(event, label);
          } else if (copies > 1) {
            counts.duplicateDeliveries++;
            await Promise.all([deliver(event, label), deliver(event, label)]); // two copies at once
          } else await deliver(event, label);
        }
      }

      /**
       * Waits for the crossing's job to have used it (lastCrossing moved) and its top-up to have
       * ended; for a crossing the model starts no top-up for, for its job to have run to its end (a
       * refusal other than the month's limit leaves no mark on the state: lastCrossing stays).
       */
      async function settled(plan: UserPlan, crossing: CrossingPlan, before: string | undefined, what: string) {
        if (!crossing.job) return;
        const waitStarted = performance.now();
        try {
          // polled gently: 20 users polling DynamoDB Local would slow the very jobs they wait for
          const deadline = Date.now() + (crossing.serverError ? 70_000 : 40_000);
          for (;;) {
            if (!crossing.attempt && (jobsDone.get(plan.userId) ?? []).some((done) => isLaterCrossing(done, before))) break;
            const state = await topUpOf(plan.userId);
            if (crossing.attempt && state?.lastCrossing !== undefined && state.lastCrossing !== before && state.inFlight === undefined) break;
            if (Date.now() > deadline) throw new Error(`timed out waiting for ${plan.userId}: ${what}`);
            await new Promise((resolve) => setTimeout(resolve, 400));
          }
        } catch (error) {
          problems.push((error as Error).message);
          return;
        }
        latencies.push(performance.now() - waitStarted);
        if (crossing.serverError) counts.serverErrors++;
        if (crossing.confirm) {
          const customer = customers.get(plan.userId) as string;
          // the invoice of the attempt just ended: the customer's newest, left open for them
          const newest = fx.stripe.invoicesOf(customer).at(-1);
          if (newest?.status !== "open") problems.push(`${plan.userId}: newest invoice ${newest?.id} is ${newest?.status}, model open (to confirm)`);
          else {
            fx.stripe.markInvoicePaid(String(newest.id)); // the customer confirms on the hosted page
            counts.confirmed++;
          }
        }
        await deliverPaid(plan, crossing);
      }

      async function grant(userId: string, grant: Grant, sign: 1 | -1) {
        if (grant.copies > 1) counts.duplicateCalls += grant.copies - 1;
        const answers = await Promise.allSettled(
          Array.from({ length: grant.copies }, () =>
            grantCredits(fx.deps.ledger, { userId, key: grant.key, amount: sign * grant.amount, bucket: "allowance", reason: "admin" }),
          ),
        );
        const refused = answers.flatMap((answer) => (answer.status === "rejected" ? [answer.reason as Error] : []));
        // one copy must apply. A second copy of a deduction that lands once the first (and the step's
        // other spends) left less than its amount is refused for want of credits rather than answered
        // as already applied (lib/ledger/grant.ts checks available before the key): counted, not
        // failed; the ledger's end state still shows whether it was applied once.
        if (refused.length === answers.length) throw refused[0];
        for (const error of refused) {
          if (sign === 1 || error.name !== "InsufficientCreditsError") throw error;
          counts.duplicateRefused++;
        }
      }

      async function runUser(plan: UserPlan) {
        const { userId } = plan;
        const holds = new Map<string, string>();
        const before = (await topUpOf(userId))?.lastCrossing;
        const on = await fx.asUser(fx.fns.subscribe.route, userId, "PUT /v1/billing/auto-topup", plan.settings);
        if (on.status !== 200) throw new Error(`${userId}: PUT auto-topup ${on.status} ${JSON.stringify(on.json)}`);
        if (plan.enableCrossing) await settled(plan, plan.enableCrossing, before, "turned on below the threshold");
        for (const [index, step] of plan.steps.entries()) {
          if (step.kind === "up" || step.kind === "settle") {
            // settles one after another (each only raises available), then the grants
            for (const [requestId, holdId] of holds) {
              const hold = plan.steps.flatMap((s) => (s.kind === "down" ? s.ops : [])).find((op) => op.kind === "authorize" && op.requestId === requestId);
              if (hold?.kind !== "authorize") throw new Error(`no hold ${requestId}`);
              await settleChat(fx.deps.ledger, { holdId, inputTokens: hold.inputTokens, outputTokens: hold.outputTokens });
            }
            holds.clear();
            if (step.kind === "up") {
              for (const up of step.grants) {
                counts.grants++;
                await grant(userId, up, 1);
              }
            }
            continue;
          }
          counts.downSteps++;
          const lastCrossing = (await topUpOf(userId))?.lastCrossing;
          const results = await Promise.allSettled(
            step.ops.map(async (op) => {
              if (op.kind === "deduct") {
                counts.spends++;
                return grant(userId, op, -1);
              }
              counts.authorizations++;
              const { holdId } = await authorizeChat(fx.deps.ledger, {
                userId,
                requestId: op.requestId,
                model: op.model,
                inputTokens: op.inputTokens,
                maxOutputTokens: op.maxOutputTokens,
              });
              holds.set(op.requestId, holdId);
            }),
          );
          const refused = results.filter((result) => result.status === "rejected");
          if (refused.length > 0) {
            const account = await fx.deps.ledger.store.getAccount(userId);
            const modelBefore = plan.steps[index - 1]?.available;
            throw new Error(
              `${userId} step ${index}: ${refused.length} spends refused (${String(refused[0]?.reason)}); available ${account?.available}, ` +
                `model ${step.available} after the step, ${modelBefore} before; ops ${JSON.stringify(step.ops)}`,
            );
          }
          if (step.crossing) await settled(plan, step.crossing, lastCrossing, `crossing of step ${index}`);
        }
      }

      const failures = await pool(plans, plans.length, runUser);
      for (const failure of failures) problems.push(String((failure as Error).stack ?? failure));

      // whatever else Stripe holds as paid (nothing, if the model is right) is sent too, as Stripe would
      for (const plan of plans) await deliverPaid(plan, undefined);
      // the late ones, shuffled across users and stories, a few at a time
      rng.shuffle(late);
      const lateFailures = await pool(late, 6, ({ event, label }) => deliver(event, label));
      for (const failure of lateFailures) problems.push(String(failure));
      // any job the model did not expect has had its chance to run
      await pipeline.events.caughtUp();
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      await pipeline.events.caughtUp();

      // ---- the model against the loopback Stripe server and the ledger ------------------------
      const totals = { drift: 0, creditsLost: 0, doubleGrants: 0, chargesBeyondModel: 0, mismatches: 0 };
      const model = { crossings: 0, attempts: 0, charges: 0, refusedByLimit: 0, turnedOff: 0, serverErrors: 0 };
      await pool(plans, 8, async (plan) => {
        const { userId, expected } = plan;
        const customer = customers.get(userId) as string;
        const credits = PACK_CREDITS[plan.settings.pack];
        model.crossings += expected.crossings;
        model.attempts += expected.attempts;
        model.charges += expected.charges;
        model.refusedByLimit += expected.refusedByLimit;
        model.turnedOff += expected.enabled ? 0 : 1;
        model.serverErrors += plan.outcomes.filter((o) => o === "server_error").length;
        const mismatch = (what: string, have: unknown, want: unknown) => {
          if (JSON.stringify(have) === JSON.stringify(want)) return;
          totals.mismatches++;
          problems.push(`${userId} (threshold ${plan.settings.threshold}, ${plan.settings.pack}, limit ${plan.settings.monthlyLimit}): ${what} ${JSON.stringify(have)}, model ${JSON.stringify(want)}`);
        };

        const charges = fx.stripe.chargesOf(customer);
        totals.chargesBeyondModel += Math.max(0, charges - expected.charges);
        mismatch("charges", charges, expected.charges);
        mismatch("pay attempts", fx.stripe.payAttempts(customer), expected.payAttempts);
        mismatch("invoices", fx.stripe.invoicesCreated(customer), expected.attempts);

        const state = await topUpOf(userId);
        mismatch(
          "auto top-up state",
          {
            enabled: state?.settings.enabled,
            seq: state?.seq,
            startedThisMonth: state?.startedThisMonth,
            failuresInARow: state?.failuresInARow,
            disabledReason: state?.disabledReason ?? null,
            inFlight: state?.inFlight !== undefined,
          },
          {
            enabled: expected.enabled,
            seq: expected.attempts,
            startedThisMonth: expected.started,
            failuresInARow: expected.failures,
            disabledReason: expected.enabled ? null : "failures",
            inFlight: false,
          },
        );

        const account = (await fx.deps.ledger.store.getAccount(userId)) as unknown as { balance: number; available: number; autoTopUpBelow?: number } | undefined;
        const have = account?.balance ?? 0;
        totals.creditsLost += Math.max(0, expected.balance - have);
        totals.doubleGrants += Math.max(0, have - expected.balance);
        mismatch("balance / available", { balance: have, available: account?.available }, { balance: expected.balance, available: expected.balance });
        mismatch("account threshold", account?.autoTopUpBelow ?? null, expected.enabled ? plan.settings.threshold : null);

        const packs = (await fx.deps.ledger.store.allEntries(userId)).filter((entry) => entry.reason === "pack");
        const invoices = new Set(packs.map((entry) => entry.refs.invoice));
        totals.doubleGrants += packs.length - invoices.size;
        mismatch("pack grants", packs.map((entry) => entry.amount), Array.from({ length: expected.charges }, () => credits));

        const audit = await auditAccount(fx.deps.ledger, userId);
        if (!audit.ok || audit.drift !== 0) {
          totals.drift++;
          problems.push(`${userId}: audit ${audit.problems.join("; ")}`);
        }
      });

      const queues = {
        topUps: await pipeline.depth(pipeline.sqs.queueUrl("creditgate-topups")),
        topUpsDead: await pipeline.depth(pipeline.sqs.queueUrl("creditgate-topups-dlq")),
      };
      const opsAudit = await opsAuditAll(fx.tableName);
      const wallMs = Math.round(performance.now() - started);
      latencies.sort((a, b) => a - b);
      const latency = { p50: Math.round(latencies[Math.floor(latencies.length / 2)] ?? 0), max: Math.round(latencies.at(-1) ?? 0) };
      console.info(
        `topup-storm: ${USERS} users, seed ${SEED}, ${(wallMs / 1000).toFixed(1)} s (warm-up ${(warmMs / 1000).toFixed(1)} s, crossing to top-up ended ms ${JSON.stringify(latency)}); model ${JSON.stringify(model)}; ran ${JSON.stringify(counts)}; invoice.paid outcomes ${JSON.stringify(webhookOutcomes)}; found ${JSON.stringify(totals)}`,
      );

      recordSection({
        section: "topup-storm",
        order: 7,
        wallMs,
        counts: { users: USERS, ...counts, ...Object.fromEntries(Object.entries(model).map(([name, n]) => [`model:${name}`, n])) },
        rows: [
          {
            check: "Auto top-up storm (subscribe, stream consumer, top-up worker and webhook functions, local Streams and SQS, loopback Stripe)",
            volume:
              `${USERS} users crossing their thresholds ${model.crossings} times from ${counts.spends} spends and ${counts.authorizations} authorizations; ` +
              `${model.attempts} top-ups started, ${model.charges} charged, ${model.refusedByLimit} refused by the monthly limit, ${model.turnedOff} turned off after failures ` +
              `(${model.serverErrors} Stripe 5xx); ${counts.duplicateCalls} duplicate calls; ${counts.deliveries} invoice.paid deliveries ` +
              `(${counts.duplicateDeliveries} duplicates, ${counts.lateDeliveries} late)`,
            drift: totals.drift,
            creditsLost: totals.creditsLost,
            doubleGrants: totals.doubleGrants,
            other: totals.chargesBeyondModel + totals.mismatches + queues.topUps + queues.topUpsDead + (opsAudit.code === 0 ? 0 : 1),
            otherLabel: "charges beyond the model, state unlike the model, jobs left queued or dead-lettered",
          },
        ],
      });
      expect(problems).toEqual([]);
      expect(totals).toEqual({ drift: 0, creditsLost: 0, doubleGrants: 0, chargesBeyondModel: 0, mismatches: 0 });
      expect(queues).toEqual({ topUps: 0, topUpsDead: 0 });
      expect({ code: opsAudit.code, err: opsAudit.err }).toEqual({ code: 0, err: [] });
      // the storm did what it claims: every rule was on the path of some user
      expect(model.crossings).toBeGreaterThan(USERS * 2);
      expect(model.charges).toBeGreaterThan(0);
      expect(model.refusedByLimit).toBeGreaterThan(0);
      expect(model.turnedOff).toBeGreaterThan(0);
      expect(model.serverErrors).toBeGreaterThan(0);
      expect(counts.serverErrors).toBe(model.serverErrors);
      expect(counts.confirmed).toBeGreaterThan(0);
      expect(counts.duplicateDeliveries).toBeGreaterThan(0);
      expect(counts.lateDeliveries).toBeGreaterThan(0);
      expect(counts.authorizations).toBeGreaterThan(0);
    },
    budgetMs(110_000),
  );
});
