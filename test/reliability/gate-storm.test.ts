import { beforeAll, describe, expect, it } from "vitest";
import { auditAccount, grantCredits, type LedgerDeps } from "../../lib/ledger/index.js";
import { appDeps } from "../../lib/runtime.js";
import { runSweep } from "../../lib/sweep/run-sweep.js";
import { createDynamoScheduleStore } from "../../lib/sweep/dynamo-schedule-store.js";
import { type Answer, invoke } from "../helpers/events.js";
import { GRAMMAR_LOOKALIKES, LONGEST_ID, PROTOTYPE_NAMES } from "../helpers/hostile-ids.js";
import { appFixture, functionEnv, importFunctions, OPUS } from "../helpers/http.js";
import { everyModelOnEveryPlan } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { serviceToken, userToken } from "../helpers/tokens.js";
import { type Chat, chatRunner, expectedCharge, type GateClient, makeChat } from "./chats.js";
import { budgetMs, HEAVY, modelCost, pool, random, recordOutcomeOf, recordSection, scale, SIGNUP_BONUS, opsAuditAll } from "./harness.js";

/**
 * Gate storm: thousands of authorize/settle/release calls from many simulated chats over hundreds
 * of accounts, through the real chat-gate function (cold-started from its environment, middy
 * stack, service token) on DynamoDB Local, with 24 calls in flight. Requests are duplicated (a
 * retried authorize, a settle sent twice, two copies at once) and reordered (release after
 * settle, settle after release, a settle after the sweep expired the hold). Admin grants land on
 * the same accounts meanwhile, some twice. The expected end state of every account is computed by
 * an independent model from the script alone (signup once, each grant key once, each hold's first
 * outcome priced at the published rates of docs/billing.md, "Catalog"), never from the system's
 * answers.
 */
captureLogs();

const rng = random();
const IN_FLIGHT = 24;

interface Grant {
  userId: string;
  key: string;
  amount: number;
  copies: number;
}

// ---- the script ---------------------------------------------------------------------------

const runId = `${process.pid}-${Date.now().toString(36)}`;
const NORMAL_ACCOUNTS = scale(200);
const HOT_ACCOUNTS = scale(10);
const DRAIN_ACCOUNTS = scale(4);
const DRAIN_ATTEMPTS = 60;
/** opus, no input, 4,000 output tokens: 300 credits; 10,000 admits exactly 33 */
const DRAIN_CALL = { model: OPUS, inputTokens: 0, maxOutputTokens: 4_000 };
const DRAIN_COST = modelCost(DRAIN_CALL.model, DRAIN_CALL.inputTokens, DRAIN_CALL.maxOutputTokens);

const chats: Chat[] = [];
const grants: Grant[] = [];
const normalUsers = Array.from({ length: NORMAL_ACCOUNTS }, (_, i) => `storm-${runId}-n${i}`);
const hotUsers = Array.from({ length: HOT_ACCOUNTS }, (_, i) => `storm-${runId}-h${i}`);
const drainUsers = Array.from({ length: DRAIN_ACCOUNTS }, (_, i) => `storm-${runId}-d${i}`);
/**
 * Hostile ids (SECURITY.md): whole accounts named after what every JavaScript object answers for
 * (`__proto__`, `constructor`…), their look-alikes within the grammar and the longest id allowed;
 * and requestIds from the same pool on those and on a third of the normal accounts.
 */
const HOSTILE_IDS = [...PROTOTYPE_NAMES, ...GRAMMAR_LOOKALIKES, LONGEST_ID];
const hostileUsers = [...PROTOTYPE_NAMES, LONGEST_ID, ...GRAMMAR_LOOKALIKES.slice(0, 3)];
for (const userId of [...normalUsers, ...hostileUsers]) {
  const count = rng.int(3, 8);
  const hostileRequestIds = hostileUsers.includes(userId) || rng.chance(0.3) ? rng.shuffle([...HOSTILE_IDS]) : [];
  for (let i = 0; i < count; i++) chats.push(makeChat(rng, userId, hostileRequestIds[i] ?? `chat-${i}`, { allowOpus: true }));
}
// Hot accounts: 25 chats each, many at once, so settles contend and take the outbox path.
for (const userId of hotUsers) {
  for (let i = 0; i < 25; i++) chats.push(makeChat(rng, userId, `hot-${i}`, { allowOpus: false }));
}
for (let i = 0; i < scale(150); i++) {
  grants.push({
    userId: rng.pick([...normalUsers, ...hotUsers, ...hostileUsers]),
    key: `admin#storm-${i}`,
    amount: rng.int(1, 500),
    copies: rng.chance(0.3) ? rng.int(2, 3) : 1,
  });
}

// ---- running it -------------------------------------------------------------------------------

let fns: Awaited<ReturnType<typeof importFunctions>>;
let fx: Awaited<ReturnType<typeof appFixture>>;
let service: string;
const counts = {
  gateCalls: 0,
  authorize: 0,
  settle: 0,
  release: 0,
  duplicates: 0,
  reordered: 0,
  grantCalls: 0,
  grantDuplicates: 0,
  clientRetries: 0,
  serverErrors: 0,
  refused402: 0,
  outboxSettles: 0,
  expiredBySweep: 0,
  forged: 0,
};
const surprises: string[] = [];

beforeAll(async () => {
  fx = await appFixture();
  fns = await importFunctions(functionEnv(fx.tableName));
  service = await serviceToken({ expiresIn: 3_600 });
  // Count settles that took the contended (outbox) path, inside the real function's own deps.
  const deps = appDeps();
  // the storm spends with opus too, on free accounts: entitlements are not its subject
  deps.ledger.catalog = everyModelOnEveryPlan();
  fx.deps.ledger.catalog = deps.ledger.catalog;
  const store = deps.ledger.store;
  deps.ledger.store = {
    ...store,
    settleToOutbox: async (request) => {
      counts.outboxSettles++;
      return store.settleToOutbox(request);
    },
  };
});

/** The function's deps with the real clock (the fixture's test clock is not the function's). */
const ledgerNow = (): LedgerDeps => ({ ...fx.deps.ledger, now: Date.now });

/** One gate call as the chat backend makes it: retried on a retryable 409 or a 5xx, like a client. */
async function gate(routeKey: string, body: Record<string, unknown>): Promise<Answer> {
  for (let attempt = 0; ; attempt++) {
    counts.gateCalls++;
    if (routeKey.endsWith("authorize")) counts.authorize++;
    else if (routeKey.endsWith("settle")) counts.settle++;
    else counts.release++;
    const answer = await invoke(fns.gate.handler, { routeKey, body, token: service });
    if (answer.status >= 500) counts.serverErrors++;
    const retryable = answer.status >= 500 || (answer.status === 409 && answer.json?.error?.retryable === true);
    if (!retryable || attempt >= 5) return answer;
    counts.clientRetries++;
  }
}

const gateClient: GateClient = { call: gate, surprises, counts };
const chatsRun = chatRunner(gateClient);

async function runGrant(grant: Grant): Promise<void> {
  if (grant.copies > 1) counts.grantDuplicates += grant.copies - 1;
  counts.grantCalls += grant.copies;
  await Promise.all(
    Array.from({ length: grant.copies }, () =>
      grantCredits(ledgerNow(), { userId: grant.userId, key: grant.key, amount: grant.amount, bucket: "allowance", reason: "admin" }),
    ),
  );
}

/** A drain account: 60 authorizations of 300 credits at once against 10,000: exactly 33 admitted. */
async function runDrain(userId: string, admitted: string[]): Promise<void> {
  const answers = await Promise.all(
    Array.from({ length: DRAIN_ATTEMPTS }, (_, i) => gate("POST /v1/gate/authorize", { userId, requestId: `drain-${i}`, ...DRAIN_CALL })),
  );
  for (const answer of answers) {
    if (answer.status === 200) admitted.push(answer.json.holdId);
    else if (answer.status === 402) {
      counts.refused402++;
      if (answer.json.error.required !== DRAIN_COST || answer.json.error.available < 0 || answer.json.error.available >= DRAIN_COST) {
        surprises.push(`drain ${userId}: odd refusal ${JSON.stringify(answer.json)}`);
      }
    } else surprises.push(`drain ${userId}: ${answer.status} ${JSON.stringify(answer.json)}`);
  }
  // Every admitted hold is used in full, at once.
  await Promise.all(
    admitted.map(async (holdId) => {
      const answer = await gate("POST /v1/gate/settle", { holdId, inputTokens: 0, outputTokens: DRAIN_CALL.maxOutputTokens });
      if (answer.status !== 200 || answer.json.charged !== DRAIN_COST) surprises.push(`drain settle: ${JSON.stringify(answer.json)}`);
    }),
  );
}

recordOutcomeOf("gate-storm");

describe("gate storm", () => {
  it(
    `${chats.length} chats over ${NORMAL_ACCOUNTS + HOT_ACCOUNTS + DRAIN_ACCOUNTS} accounts, ${IN_FLIGHT} in flight: every account ends as the model says`,
    async () => {
      const started = performance.now();
      const drained = new Map(drainUsers.map((userId) => [userId, [] as string[]]));
      type Task = { chat: Chat } | { grant: Grant } | { drain: string };
      const tasks: Task[] = rng.shuffle([
        ...chats.map((chat) => ({ chat })),
        ...grants.map((grant) => ({ grant })),
        ...drainUsers.map((drain) => ({ drain })),
      ]);
      const failures = await pool(tasks, IN_FLIGHT, async (task) => {
        if ("chat" in task) await chatsRun.run(task.chat);
        else if ("grant" in task) await runGrant(task.grant);
        else await runDrain(task.drain, drained.get(task.drain) as string[]);
      });

      // Phase 2: two hours later the scheduled sweep expires every abandoned hold, once.
      const later = { ...fx.deps.ledger, now: () => Date.now() + 2 * 3_600_000 };
      const schedule = createDynamoScheduleStore(fx.client, fx.tableName);
      const sweep = await runSweep(later, schedule, { remainingMs: () => 600_000, concurrency: 8 });
      counts.expiredBySweep = sweep.released;
      const again = await runSweep(later, schedule, { remainingMs: () => 600_000, concurrency: 8 });

      // Phase 3: the chat backend comes back late for some of them (settle or release after expiry).
      const abandoned = chats.filter((chat) => chat.kind === "abandoned");
      const lateFailures = await pool(abandoned, IN_FLIGHT, (chat) => chatsRun.runLate(chat));

      // ---- the independent model ---------------------------------------------------------
      const expected = new Map<string, number>();
      for (const userId of [...normalUsers, ...hotUsers, ...drainUsers, ...hostileUsers]) expected.set(userId, SIGNUP_BONUS);
      for (const chat of chats) expected.set(chat.userId, (expected.get(chat.userId) as number) - expectedCharge(chat));
      for (const grant of grants) expected.set(grant.userId, (expected.get(grant.userId) as number) + grant.amount);
      const admittedPerDrain = Math.floor(SIGNUP_BONUS / DRAIN_COST);
      for (const userId of drainUsers) expected.set(userId, SIGNUP_BONUS - admittedPerDrain * DRAIN_COST);
      const chatsByUser = Map.groupBy(chats, (chat) => chat.userId);
      const grantsByUser = Map.groupBy(grants, (grant) => grant.userId);

      // ---- what the system says ----------------------------------------------------------
      let driftAccounts = 0;
      let creditsLost = 0;
      let excess = 0;
      let doubleFacts = 0;
      let openHolds = 0;
      const problems: string[] = [];
      await pool([...expected.keys()], 16, async (userId) => {
        const audit = await auditAccount(fx.deps.ledger, userId);
        if (!audit.ok || audit.drift !== 0) {
          driftAccounts++;
          problems.push(`${userId}: ${audit.problems.join("; ")}`);
        }
        const account = await fx.deps.ledger.store.getAccount(userId);
        const want = expected.get(userId) as number;
        const have = account?.balance ?? 0;
        creditsLost += Math.max(0, want - have);
        excess += Math.max(0, have - want);
        if (have !== want) problems.push(`${userId}: balance ${have}, model ${want}`);
        openHolds += Object.keys(account?.holds ?? {}).length + Object.keys(account?.outbox ?? {}).length;
        if (account && account.balance !== account.available) problems.push(`${userId}: credits still held`);

        // Every fact once: one signup, each grant key once with its amount, one settle per charged chat.
        const entries = await fx.deps.ledger.store.allEntries(userId);
        const byFact = Map.groupBy(entries, (entry) =>
          entry.key.startsWith("settle#") ? entry.key.split("#").slice(0, 2).join("#") : entry.key,
        );
        for (const [fact, list] of byFact) {
          if (list.length > 1) {
            doubleFacts++;
            problems.push(`${userId}: ${fact} applied ${list.length} times`);
          }
        }
        if (byFact.get("signup")?.length !== 1) problems.push(`${userId}: signup entries ${byFact.get("signup")?.length}`);
        for (const grant of grantsByUser.get(userId) ?? []) {
          const entry = byFact.get(grant.key)?.[0];
          if (entry?.amount !== grant.amount) problems.push(`${userId}: grant ${grant.key} is ${entry?.amount}`);
        }
        const charged = (chatsByUser.get(userId) ?? []).filter((chat) => expectedCharge(chat) > 0);
        for (const chat of charged) {
          const entry = byFact.get(`settle#${chat.requestId}`)?.[0];
          if (entry?.amount !== -expectedCharge(chat)) problems.push(`${userId}: settle of ${chat.requestId} is ${entry?.amount}`);
        }
        const settles = entries.filter((entry) => entry.reason === "settle").length;
        const wantSettles = drainUsers.includes(userId) ? admittedPerDrain : charged.length;
        if (settles !== wantSettles) problems.push(`${userId}: ${settles} settle entries, model ${wantSettles}`);
      });

      // The read path (GET /v1/credits through the real function) agrees with the model too.
      const sample = rng.shuffle([...expected.keys()]).slice(0, 40);
      await pool(sample, 8, async (userId) => {
        const view = await invoke(fns.credits.handler, { routeKey: "GET /v1/credits", token: await userToken(userId) });
        const want = expected.get(userId);
        if (view.status !== 200 || view.json.balance !== want || view.json.held !== 0 || view.json.available !== want) {
          problems.push(`GET /v1/credits ${userId}: ${JSON.stringify(view.json)}, model ${want}`);
        }
      });

      const wallMs = Math.round(performance.now() - started);
      recordSection({
        section: "gate-storm",
        order: 1,
        wallMs,
        counts: { ...counts, chats: chats.length, accounts: expected.size, grants: grants.length, inFlight: IN_FLIGHT },
        rows: [
          {
            check: "Gate storm (chat-gate function, DynamoDB Local)",
            volume:
              `${counts.gateCalls.toLocaleString("en-US")} gate calls (${counts.authorize} authorize, ${counts.settle} settle, ` +
              `${counts.release} release; ${counts.duplicates} duplicated, ${counts.reordered} reordered) from ` +
              `${chats.length + DRAIN_ACCOUNTS * DRAIN_ATTEMPTS} chats over ${expected.size} accounts, ${IN_FLIGHT} in flight; ` +
              `${counts.grantCalls} admin grants (${counts.grantDuplicates} duplicates); ${counts.outboxSettles} contended settles; ` +
              `${counts.expiredBySweep} holds expired by the sweep; ${counts.refused402} overdrafts refused; ` +
              `${hostileUsers.length} accounts and ${chats.filter((chat) => HOSTILE_IDS.includes(chat.requestId)).length} chats with hostile ids; ` +
              `${counts.forged} settles with a forged hold id`,
            drift: driftAccounts,
            creditsLost,
            doubleGrants: doubleFacts + excess,
            other: openHolds + counts.serverErrors + surprises.length,
            otherLabel: "open holds, 5xx, wrong answers",
          },
        ],
      });

      expect(failures).toEqual([]);
      expect(lateFailures).toEqual([]);
      expect(surprises).toEqual([]);
      expect(problems).toEqual([]);
      // and the operator's own check of the whole table agrees
      const opsAudit = await opsAuditAll(fx.tableName);
      expect({ code: opsAudit.code, err: opsAudit.err }).toEqual({ code: 0, err: [] });
      expect({ driftAccounts, creditsLost, excess, doubleFacts, openHolds, serverErrors: counts.serverErrors }).toEqual({
        driftAccounts: 0,
        creditsLost: 0,
        excess: 0,
        doubleFacts: 0,
        openHolds: 0,
        serverErrors: 0,
      });
      expect(counts.expiredBySweep).toBe(abandoned.length);
      expect(again.released).toBe(0);
      expect(counts.refused402).toBe(DRAIN_ACCOUNTS * (DRAIN_ATTEMPTS - admittedPerDrain));
      // the storm did what it claims: enough calls, and contention that forced the outbox path
      expect(counts.gateCalls).toBeGreaterThanOrEqual(scale(3_000));
      expect(counts.outboxSettles).toBeGreaterThan(0);
      expect(counts.forged).toBeGreaterThan(0);
    },
    budgetMs(150_000),
  );
});

if (HEAVY) console.info(`gate storm: heavy mode, ${chats.length} chats`);
