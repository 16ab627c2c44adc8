/**
 * Operator CLI: `npm run ops -- <command> …`. Talks to the table named by TABLE_NAME (default
 * creditgate-local) at DYNAMODB_ENDPOINT (default the local stack's http://127.0.0.1:8000; unset
 * it with DYNAMODB_ENDPOINT= and use normal AWS credentials for a deployed table).
 *
 *   show <userId>                               the account as GET /v1/credits shows it
 *   ledger <userId> [--limit N]                 newest entries first
 *   grant <userId> <credits> --key K --reason "why" [--bucket allowance|purchased]
 *   deduct <userId> <credits> --key K --reason "why"
 *   audit <userId> | audit --all                balance vs ledger; exits 1 on any drift
 *   export <userId> | export --all [--out file.csv]
 */
import { createWriteStream } from "node:fs";
import { parseArgs } from "node:util";
import { DynamoDBClient } from "@aws-sdk/client-dynamodb";
import { catalog } from "../../lib/catalog.js";
import { AppError } from "../../lib/errors.js";
import {
  auditAccount,
  createDynamoLedgerStore,
  getBalance,
  grantCredits,
  LEDGER_DEFAULTS,
  type LedgerDeps,
  listHistory,
} from "../../lib/ledger/index.js";
import { scanUserIds } from "../../lib/ops/accounts.js";
import { LEDGER_CSV_HEADER, ledgerCsvRow } from "../../lib/ops/csv.js";

const USAGE = `usage: npm run ops -- <show|ledger|grant|deduct|audit|export> …  (see infra/ops/cli.ts)`;

export interface OpsIo {
  out: (line: string) => void;
  err: (line: string) => void;
}

function connect(env: NodeJS.ProcessEnv): { deps: LedgerDeps; client: DynamoDBClient; tableName: string } {
  const tableName = env.TABLE_NAME || "creditgate-local";
  const endpoint = env.DYNAMODB_ENDPOINT ?? "http://127.0.0.1:8000";
  const client = endpoint
    ? new DynamoDBClient({ endpoint, region: env.AWS_REGION || "local", credentials: { accessKeyId: "local", secretAccessKey: "local" } })
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
  const { deps, client, tableName } = connect(env);
  try {
    switch (command) {
      case "show":
        if (!userId) throw new AppError(400, "USAGE", "show <userId>");
        io.out(JSON.stringify(await getBalance(deps, userId), null, 2));
        return 0;
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
        const result = await grantCredits(deps, {
          userId,
          key: `admin#${values.key}`,
          amount: command === "grant" ? credits : -credits,
          bucket: values.bucket === "purchased" ? "purchased" : "allowance",
          reason: "admin",
          refs: { note: values.reason.slice(0, 500), operator: env.USER ?? "unknown" },
        });
        io.out(
          result.applied
            ? `${command === "grant" ? "granted" : "deducted"} ${credits} credits (entry admin#${values.key}); balance ${result.balance}`
            : `already applied earlier under key admin#${values.key} (amount ${result.entry.amount}); nothing changed`,
        );
        return 0;
      }
      case "audit": {
        if (!values.all) {
          if (!userId) throw new AppError(400, "USAGE", "audit <userId> | audit --all");
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
          if (audited % 500 === 0) io.err(`audited ${audited} accounts (${drifting} drifting)…`);
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
          if (accounts % 500 === 0) io.err(`exported ${accounts} accounts, ${rows} entries…`);
        }
        if (file) await new Promise((done) => file.end(done));
        io.err(`exported ${rows} entries of ${accounts} account(s)${values.out ? ` to ${values.out}` : ""}`);
        return 0;
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

if (import.meta.url === `file://${process.argv[1]}`) {
  runOps(process.argv.slice(2), process.env, { out: (line) => console.log(line), err: (line) => console.error(line) }).then(
    (code) => process.exit(code),
  );
}
