import { beforeAll, describe, expect, it } from "vitest";
import { type BillingAccount, HANDLED_EVENT_TYPES } from "../../lib/billing/index.js";
import { auditAccount, peekBalance } from "../../lib/ledger/index.js";
import { type BillingFixture, billingFixture } from "../helpers/billing.js";
import { invoke } from "../helpers/events.js";
import { captureLogs } from "../helpers/logs.js";
import { signatureFor } from "../helpers/stripe-events.js";
import { budgetMs, pool, random, recordOutcomeOf, recordSection, SEED, scale, opsAuditAll } from "./harness.js";
import { buildWorld, type Delivery, expectedState, type Json, prepareStripe } from "./stripe-world.js";
import { buildUnappliable, checkUnappliable, fixUnappliable, prepareUnappliable } from "./unappliable.js";

/**
 * Webhook storm: 1,000 signed deliveries (10,000 in heavy mode) of every event type billing
 * handles, duplicated (up to 4 copies, some at the same time) and shuffled across customers and
 * within each customer's story, posted to the real webhook function (cold-started from its
 * environment, raw-body stack, signature check) with 16 in flight, the real Stripe SDK talking to
 * the loopback Stripe server for subscription and invoice-payment lookups. A 5xx is redelivered
 * later, as Stripe does. Afterwards every account must be what the business facts say.
 */
captureLogs();

const rng = random(SEED + 1);
const IN_FLIGHT = 16;
const DELIVERIES = scale(1_000);
const runId = `${process.pid}${Date.now().toString(36)}`;
const { world, deliveries } = buildWorld(rng, { runId, deliveries: DELIVERIES });
/** events that cannot be applied when they arrive (issue 16), mixed into the storm */
const unappliable = buildUnappliable(rng, runId, scale(30));

let fx: BillingFixture;
beforeAll(async () => {
  fx = await billingFixture();
  prepareStripe(fx.stripe, world);
  // The API created each customer (and its mapping) before Stripe could send anything about it.
  await pool(world.users, 16, (user) => fx.billing.store.putCustomerUser(user.customer, user.userId, 0));
  await prepareUnappliable(fx.billing, unappliable.cases);
});

recordOutcomeOf("webhook-storm");

describe("webhook storm", () => {
  it(
    `${DELIVERIES} deliveries, duplicated and shuffled: every account ends as the business facts say`,
    async () => {
      const started = performance.now();
      const counts = { deliveries: 0, redeliveries: 0, serverErrors: 0, duplicateAnswers: 0, refused: 0 };
      const byType = new Map<string, number>();
      const outcomes = new Map<string, number>();
      const surprises: string[] = [];

      async function deliver(event: Json): Promise<number> {
        counts.deliveries++;
        const payload = JSON.stringify(event);
        const answer = await invoke(fx.fns.webhook.handler, {
          routeKey: "POST /v1/stripe/webhook",
          body: payload,
          headers: { "stripe-signature": signatureFor(payload), "content-type": "application/json; charset=utf-8" },
        });
        if (answer.status >= 500) counts.serverErrors++;
        else if (answer.status !== 200) {
          counts.refused++;
          surprises.push(`${event.type} ${event.id}: ${answer.status} ${JSON.stringify(answer.json)}`);
        } else {
          outcomes.set(answer.json.outcome, (outcomes.get(answer.json.outcome) ?? 0) + 1);
          if (answer.json.outcome === "duplicate") counts.duplicateAnswers++;
        }
        return answer.status;
      }

      // Stripe redelivers what failed (5xx) later, up to a bound.
      const queue: (Delivery & { attempt: number })[] = deliveries.map((delivery) => ({ ...delivery, attempt: 0 }));
      // the unappliable events at random places, the world's own order left as it was built
      for (const delivery of unappliable.deliveries) queue.splice(rng.int(0, queue.length), 0, { ...delivery, attempt: 0 });
      for (const delivery of deliveries) byType.set(delivery.event.type, (byType.get(delivery.event.type) ?? 0) + 1);
      let round = 0;
      while (queue.length && round < 10) {
        round++;
        const batch = queue.splice(0);
        const failures = await pool(batch, IN_FLIGHT, async (delivery) => {
          const status = await deliver(delivery.event);
          if (status >= 500) {
            counts.redeliveries++;
            queue.push({ ...delivery, attempt: delivery.attempt + 1 });
          }
        });
        expect(failures).toEqual([]);
      }

      // The operator's fix (the price configured and replayed, the packless sessions dismissed):
      // none of the unappliable events is lost, and their users hold what the model says.
      await fixUnappliable(fx.billing, unappliable.cases);
      const unappliableEnd = await checkUnappliable(fx.billing, unappliable.cases);

      let driftAccounts = 0;
      let creditsLost = 0;
      let excess = 0;
      let doubleFacts = 0;
      const problems: string[] = [];
      await pool(world.users, 16, async (user) => {
        const want = expectedState(user);
        const audit = await auditAccount(fx.deps.ledger, user.userId);
        if (!audit.ok || audit.drift !== 0) {
          driftAccounts++;
          problems.push(`${user.userId}: ${audit.problems.join("; ")}`);
        }
        const account = (await fx.deps.ledger.store.getAccount(user.userId)) as BillingAccount | undefined;
        const have = account?.balance ?? 0;
        creditsLost += Math.max(0, want.balance - have);
        excess += Math.max(0, have - want.balance);
        if (have !== want.balance) problems.push(`${user.userId}: balance ${have}, model ${want.balance} (clawed ${want.clawed})`);
        const view = await peekBalance(fx.deps.ledger, user.userId);
        if (view.allowance !== want.allowance || view.purchased !== want.purchased) {
          problems.push(`${user.userId}: split ${view.allowance}/${view.purchased}, model ${want.allowance}/${want.purchased}`);
        }
        if (account?.plan !== want.plan || account?.interval !== want.interval) {
          problems.push(`${user.userId}: plan ${account?.plan}/${account?.interval}, model ${want.plan}/${want.interval}`);
        }
        if ((account?.paymentFailedAt ?? null) !== want.paymentFailedAt) {
          problems.push(`${user.userId}: paymentFailedAt ${account?.paymentFailedAt}, model ${want.paymentFailedAt}`);
        }
        // Each crediting fact exactly once, under its own key, for its amount; nothing else credits.
        const entries = await fx.deps.ledger.store.allEntries(user.userId);
        const credits = entries.filter((entry) => entry.amount > 0);
        for (const [key, amount] of want.creditKeys) {
          const found = credits.filter((entry) => entry.key === key);
          if (found.length !== 1 || found[0]?.amount !== amount) problems.push(`${user.userId}: ${key} credited ${JSON.stringify(found.map((e) => e.amount))}`);
        }
        for (const entry of credits) {
          if (!want.creditKeys.has(entry.key)) {
            doubleFacts++;
            problems.push(`${user.userId}: unexpected credit ${entry.key} ${entry.amount}`);
          }
        }
        // No payment credited under two keys (a session, an invoice named by two entries).
        for (const ref of ["session", "invoice"] as const) {
          const named = Map.groupBy(
            credits.filter((entry) => entry.reason !== "upgrade" && entry.refs[ref] !== undefined),
            (entry) => String(entry.refs[ref]),
          );
          for (const [id, list] of named) {
            if (list.length > 1) {
              doubleFacts++;
              problems.push(`${user.userId}: ${ref} ${id} credited ${list.length} times`);
            }
          }
        }
        const clawed = -entries.filter((entry) => entry.reason === "refund" || entry.reason === "dispute").reduce((sum, e) => sum + e.amount, 0);
        if (clawed !== want.clawed) problems.push(`${user.userId}: clawed back ${clawed}, model ${want.clawed}`);
        if (account?.pendingCheckout || account?.pendingPackCheckout) problems.push(`${user.userId}: a checkout marker is left`);
      });

      // Every distinct event was durably applied (a receipt) or parked (a parked record), never
      // lost; and only events about nobody we know (a stranger's invoice) are parked.
      const distinct = [...new Set(deliveries.map((delivery) => delivery.event.id as string))];
      const strangers = new Set(world.noise.map((event) => event.id as string));
      let missingReceipts = 0;
      let parked = 0;
      await pool(distinct, 16, async (eventId) => {
        if (await fx.billing.store.getReceipt(eventId)) return;
        const record = await fx.billing.store.getParkedEvent(eventId);
        if (record?.status === "parked" && strangers.has(eventId) && record.reason === "unknown_customer") parked++;
        else missingReceipts++;
      });

      const wallMs = Math.round(performance.now() - started);
      const types = [...byType.entries()].sort((a, b) => b[1] - a[1]);
      recordSection({
        section: "webhook-storm",
        order: 2,
        wallMs,
        counts: {
          ...counts,
          distinctEvents: distinct.length,
          users: world.users.length,
          eventTypes: byType.size,
          inFlight: IN_FLIGHT,
          ...Object.fromEntries(types.map(([type, n]) => [`type:${type}`, n])),
          ...Object.fromEntries([...outcomes].map(([outcome, n]) => [`outcome:${outcome}`, n])),
        },
        rows: [
          {
            check: "Webhook storm (webhook function, signed, loopback Stripe)",
            volume:
              `${deliveries.length.toLocaleString("en-US")} deliveries of ${distinct.length} distinct events ` +
              `(${deliveries.length - distinct.length} duplicates, shuffled, ${IN_FLIGHT} in flight) ` +
              `of ${byType.size} types for ${world.users.length} customers; ${counts.redeliveries} redelivered after a 5xx; ` +
              `${parked} strangers' events parked, none lost; ${unappliable.deliveries.length} deliveries of ` +
              `${unappliable.cases.length} users' unappliable events (unknown price, customer before its checkout, pack not named): ` +
              `${unappliableEnd.ended.parkedThenResolved} parked then resolved, ${unappliableEnd.ended.dismissed} dismissed, ` +
              `${unappliableEnd.ended.applied} applied on arrival`,
            drift: driftAccounts,
            creditsLost,
            doubleGrants: doubleFacts + excess,
            other: counts.refused + missingReceipts + problems.length + unappliableEnd.problems.length,
            otherLabel: "refused deliveries, missing receipts, wrong state",
          },
        ],
      });

      expect(surprises).toEqual([]);
      expect(problems).toEqual([]);
      expect(unappliableEnd.problems).toEqual([]);
      expect(unappliableEnd.ended).toMatchObject({ lost: 0, stillParked: 0, dismissed: unappliable.cases.filter((c) => c.kind === "pack").length });
      expect(unappliableEnd.ended.parkedThenResolved).toBeGreaterThanOrEqual(unappliable.cases.filter((c) => c.kind === "price").length);
      // and the operator's own check of the whole table agrees
      const opsAudit = await opsAuditAll(fx.tableName);
      expect({ code: opsAudit.code, err: opsAudit.err }).toEqual({ code: 0, err: [] });
      expect({ driftAccounts, creditsLost, excess, doubleFacts, missingReceipts }).toEqual({
        driftAccounts: 0,
        creditsLost: 0,
        excess: 0,
        doubleFacts: 0,
        missingReceipts: 0,
      });
      // the storm did what it claims
      expect(counts.deliveries - counts.redeliveries).toBe(DELIVERIES + unappliable.deliveries.length);
      expect(deliveries.length).toBe(DELIVERIES);
      // every event type billing handles was in it, and some it ignores
      expect(HANDLED_EVENT_TYPES.filter((type) => !byType.has(type))).toEqual([]);
      expect(byType.size).toBeGreaterThan(HANDLED_EVENT_TYPES.length);
      expect(counts.duplicateAnswers).toBeGreaterThan(0);
    },
    budgetMs(120_000),
  );
});
