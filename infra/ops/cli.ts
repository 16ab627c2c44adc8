/**
 * Operator CLI: `npm run ops -- <command> …`. Talks to the table named by TABLE_NAME (default
 * creditgate-local) at DYNAMODB_ENDPOINT (default the local stack's http://127.0.0.1:8000; unset
 * it with DYNAMODB_ENDPOINT= and use normal AWS credentials for a deployed table).
 *
 *   show <userId>                               the account as GET /v1/credits shows it (read only)
 *   ledger <userId> [--limit N]                 newest entries first
 *   grant <userId> <credits> --key K --reason "why" [--bucket allowance|purchased]
 *   deduct <userId> <credits> --key K --reason "why"
 *   audit <userId> | audit --all                balance vs ledger; exits 1 on any drift
 *   export <userId> | export --all [--out file.csv]
 *   events list|show|replay|dismiss …           parked Stripe events (infra/ops/events.ts)
 *   webhooks failed|redrive|send-test …         outgoing webhooks: the DLQ, the endpoint (infra/ops/webhooks.ts)
 *   --progress-every N                          progress line on stderr every N accounts (default 500)
 */
import { createWriteStream } from "node:fs";
import { parseArgs } from "node:util";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { catalog } from "../../lib/catalog.js";
import { localDynamoClient } from "../../lib/dynamo/local-client.js";
import { AppError, ConflictError, NotFoundError } from "../../lib/errors.js";
import {
  auditAccount,
  balanceView,
  grantCredits,
  LEDGER_DEFAULTS,
  type LedgerDeps,
  listHistory,
} from "../../lib/ledger/index.js";
import { createDynamoLedgerStore } from "../../lib/ledger/dynamo-ledger-store.js";
import { scanUserIds } from "../../lib/ops/accounts.js";
import { LEDGER_CSV_HEADER, ledgerCsvRow } from "../../lib/ops/csv.js";
import type { LedgerEntry } from "../../lib/ledger/account.js";
import { isMain } from "../local/is-main.js";
import { billingDepsFromEnv, runEventsCommand } from "./events.js";
import type { OpsIo } from "./io.js";
import { runWebhooksCommand, webhookQueuesFromEnv } from "./webhooks.js";

const USAGE = `usage: npm run ops -- <show|ledger|grant|deduct|audit|export|events|webhooks> …  (see infra/ops/cli.ts)`;

function connect(env: NodeJS.ProcessEnv): { deps: LedgerDeps; client: DynamoDBClient; tableName: string } {
  const tableName = env.TABLE_NAME || "creditgate-local";
  const endpoint = env.DYNAMODB_ENDPOINT ?? "http://127.0.0.1:8000";
  const client = endpoint
    ? localDynamoClient(endpoint, { region: env.AWS_REGION || "local" })
    : new DynamoDBClient({});
  const deps: LedgerDeps = {
    store: createDynamoLedgerStore(client, tableName),
    now: Date.now,
    holdTtlMs: LEDGER_DEFAULTS.holdTtlMs,
    maxOpenHolds: LEDGER_DEFAULTS.maxOpenHolds,
    authorizeRateLimitPerMinute: 0,
    catalog,
  };
  return { deps, client, tableName };
}

function parseOpsArgs(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      key: { type: "string" },
      reason: { type: "string" },
      bucket: { type: "string", default: "allowance" },
      limit: { type: "string", default: "50" },
      cursor: { type: "string" },
      all: { type: "boolean", default: false },
      out: { type: "string" },
      "progress-every": { type: "string", default: "500" },
    },
  });
}

/** Runs one command; returns the process exit code. */
export async function runOps(argv: string[], env: NodeJS.ProcessEnv, io: OpsIo): Promise<number> {
  let parsed: ReturnType<typeof parseOpsArgs>;
  try {
    parsed = parseOpsArgs(argv);
  } catch (error) {
    io.err(`${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, userId, amountText] = positionals;
  const progressEvery = Number(values["progress-every"]);
  if (!Number.isSafeInteger(progressEvery) || progressEvery < 1) {
    io.err(`--progress-every must be a positive whole number\n${USAGE}`);
    return 2;
  }
  const { deps, client, tableName } = connect(env);
  try {
    switch (command) {
      case "show": {
        if (!userId) throw new AppError(400, "USAGE", "show <userId>");
        // A plain read: getBalance would create a mistyped user's account, signup bonus included.
        const account = await existingAccount(deps, tableName, userId);
        io.out(JSON.stringify(balanceView(account, deps), null, 2));
        return 0;
      }
      case "ledger": {
        if (!userId) throw new AppError(400, "USAGE", "ledger <userId> [--limit N] [--cursor C]");
        const page = await listHistory(deps, { userId, limit: Number(values.limit), ...(values.cursor ? { cursor: values.cursor } : {}) });
        for (const entry of page.entries) {
          io.out(`${entry.createdAt}  ${String(entry.amount).padStart(10)}  → ${String(entry.balanceAfter).padStart(10)}  ${entry.reason.padEnd(9)} ${entry.key}`);
        }
        if (page.nextCursor) io.out(`… more: ledger ${userId} --limit ${values.limit} --cursor ${page.nextCursor}`);
        return 0;
      }
      case "grant":
      case "deduct": {
        const credits = Number(amountText);
        if (!userId || !Number.isSafeInteger(credits) || credits <= 0 || !values.key || !values.reason) {
          throw new AppError(400, "USAGE", `${command} <userId> <positive whole credits> --key <idempotency key> --reason "<why>"`);
        }
        const key = `admin#${values.key}`;
        const amount = command === "grant" ? credits : -credits;
        const bucket = values.bucket === "purchased" ? "purchased" : "allowance";
        const note = values.reason.slice(0, 500);
        // A reused key answers from the stored entry before grantCredits: a deduct retried after the
        // credits were spent must still say "already applied", not INSUFFICIENT_CREDITS.
        const earlier = await deps.store.getEntry(userId, key);
        if (earlier) return alreadyApplied(io, earlier, { amount, bucket, note });
        const result = await grantCredits(deps, {
          userId,
          key,
          amount,
          bucket,
          reason: "admin",
          refs: { note, operator: env.USER ?? "unknown" },
        });
        if (!result.applied) return alreadyApplied(io, result.entry, { amount, bucket, note });
        io.out(`${command === "grant" ? "granted" : "deducted"} ${credits} credits (entry ${key}); balance ${result.balance}`);
        return 0;
      }
      case "audit": {
        if (!values.all) {
          if (!userId) throw new AppError(400, "USAGE", "audit <userId> | audit --all");
          // An account with no ledger would audit clean: a mistyped id must not read as "ok".
          await existingAccount(deps, tableName, userId);
          const report = await auditAccount(deps, userId);
          io.out(JSON.stringify(report, null, 2));
          return report.ok ? 0 : 1;
        }
        let audited = 0;
        let drifting = 0;
        for await (const id of scanUserIds(client, tableName)) {
          const report = await auditAccount(deps, id);
          audited += 1;
          if (!report.ok) {
            drifting += 1;
            io.out(`DRIFT ${id}: ${report.problems.join("; ")}`);
          }
          if (audited % progressEvery === 0) io.err(`audited ${audited} accounts (${drifting} drifting)…`);
        }
        io.out(`audited ${audited} accounts: ${drifting === 0 ? "no drift" : `${drifting} with drift`}`);
        return drifting === 0 ? 0 : 1;
      }
      case "export": {
        if (!values.all && !userId) throw new AppError(400, "USAGE", "export <userId> | export --all [--out file.csv]");
        const file = values.out ? createWriteStream(values.out) : undefined;
        const write = (line: string) => (file ? file.write(`${line}\n`) : io.out(line));
        write(LEDGER_CSV_HEADER);
        let accounts = 0;
        let rows = 0;
        const ids = values.all ? scanUserIds(client, tableName) : (async function* () { yield userId as string; })();
        for await (const id of ids) {
          const entries = (await deps.store.allEntries(id)).sort((a, b) => a.seq - b.seq);
          for (const entry of entries) write(ledgerCsvRow(entry));
          rows += entries.length;
          accounts += 1;
          if (accounts % progressEvery === 0) io.err(`exported ${accounts} accounts, ${rows} entries…`);
        }
        if (file) await new Promise((done) => file.end(done));
        io.err(`exported ${rows} entries of ${accounts} account(s)${values.out ? ` to ${values.out}` : ""}`);
        return 0;
      }
      case "events":
        return await runEventsCommand(
          { sub: userId, eventId: amountText, reason: values.reason, all: values.all ?? false },
          billingDepsFromEnv(env, deps, client, tableName),
          io,
        );
      case "webhooks": {
        const queues = webhookQueuesFromEnv(env);
        try {
          return await runWebhooksCommand({ sub: userId, eventId: amountText, all: values.all ?? false, limit: Number(values.limit) }, queues, env, io);
        } finally {
          queues.client.destroy();
        }
      }
      default:
        io.err(USAGE);
        return 2;
    }
  } catch (error) {
    if (error instanceof AppError) {
      io.err(`${error.code}: ${error.message}`);
      return error.code === "USAGE" ? 2 : 1;
    }
    const code = (error as { name?: string }).name;
    if (code === "ResourceNotFoundException") io.err(`table ${tableName} not found at ${env.DYNAMODB_ENDPOINT ?? "http://127.0.0.1:8000"}`);
    else if ((error as { code?: string }).code === "ECONNREFUSED" || /ECONNREFUSED/.test(String(error))) {
      io.err(`cannot reach DynamoDB at ${env.DYNAMODB_ENDPOINT ?? "http://127.0.0.1:8000"} — is \`npm start\` running?`);
    } else io.err(`failed: ${(error as Error).message}`);
    return 1;
  } finally {
    client.destroy();
  }
}

/** The account, read only; a mistyped id is NOT_FOUND (exit 1), never created. */
async function existingAccount(deps: LedgerDeps, tableName: string, userId: string) {
  const account = await deps.store.getAccount(userId);
  if (!account) throw new NotFoundError(`no such account ${userId} in ${tableName} (nothing was written)`);
  return account;
}

/**
 * The operator's key names one adjustment: the same amount, bucket and reason again is a harmless
 * retry (exit 0); anything else under that key is a mistake that must not look like success.
 */
function alreadyApplied(io: OpsIo, entry: LedgerEntry, wanted: { amount: number; bucket: string; note: string }): number {
  const note = String(entry.refs.note ?? "");
  if (entry.amount === wanted.amount && entry.bucket === wanted.bucket && note === wanted.note) {
    io.out(`already applied earlier under key ${entry.key} (amount ${entry.amount}); nothing changed`);
    return 0;
  }
  throw new ConflictError(
    `key ${entry.key} was already used on ${new Date(entry.createdAt).toISOString()} for amount ${entry.amount} ` +
      `(${entry.bucket}, reason "${note}"), not ${wanted.amount} (${wanted.bucket}, reason "${wanted.note}"); ` +
      "nothing changed — use a new --key for another adjustment",
  );
}

if (isMain(import.meta.url)) {
  runOps(process.argv.slice(2), process.env, { out: (line) => console.log(line), err: (line) => console.error(line) }).then(
    (code) => process.exit(code),
  );
}
