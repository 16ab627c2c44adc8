import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { ScanCommand, UpdateItemCommand } from "@aws-sdk/client-dynamodb";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { isMain } from "../../infra/local/is-main.js";
import { runOps } from "../../infra/ops/cli.js";
import { authorizeChat, ensureAccount } from "../../lib/ledger/index.js";
import { ledgerFixture, uniqueUser } from "../helpers/ledger.js";

let fx: Awaited<ReturnType<typeof ledgerFixture>>;
let env: NodeJS.ProcessEnv;
beforeAll(async () => {
  fx = await ledgerFixture();
  env = { TABLE_NAME: fx.tableName, DYNAMODB_ENDPOINT: inject("dynamoEndpoint"), USER: "test-operator" };
});

async function ops(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runOps(argv, env, { out: (line) => out.push(line), err: (line) => err.push(line) });
  return { code, out: out.join("\n"), err: err.join("\n") };
}

/** Every item in the table, counted: what "writes nothing" is checked against. */
async function itemCount(): Promise<number> {
  let count = 0;
  let start: Record<string, never> | undefined;
  do {
    const page = await fx.client.send(new ScanCommand({ TableName: fx.tableName, Select: "COUNT", ExclusiveStartKey: start }));
    count += page.Count ?? 0;
    start = page.LastEvaluatedKey as typeof start;
  } while (start);
  return count;
}

const auditedCount = (out: string) => Number(/audited (\d+) accounts:/.exec(out)?.[1]);

describe("operator CLI", () => {
  it("shows an account and grants idempotently by the operator's key", async () => {
    const user = uniqueUser("ops");
    await ensureAccount(fx.deps, user);
    expect(JSON.parse((await ops("show", user)).out)).toMatchObject({ userId: user, balance: 10_000 });
    const first = await ops("grant", user, "2500", "--key", "ticket-42", "--reason", "goodwill, ticket #42");
    expect(first).toMatchObject({ code: 0 });
    expect(first.out).toMatch(/granted 2500 credits.*balance 12500/);
    const again = await ops("grant", user, "2500", "--key", "ticket-42", "--reason", "goodwill, ticket #42");
    expect(again).toMatchObject({ code: 0 });
    expect(again.out).toMatch(/already applied/);
    expect(JSON.parse((await ops("show", user)).out).balance).toBe(12_500);
    expect((await ops("ledger", user)).out).toMatch(/2500 .* 12500 .*admin\s+admin#ticket-42/);
    // pages: the newest entry, then the command that prints the next page, which holds the signup
    const first1 = (await ops("ledger", user, "--limit", "1")).out;
    expect(first1).toMatch(/admin#ticket-42/);
    expect(first1).not.toMatch(/signup/);
    const cursor = /--cursor (\S+)/.exec(first1)?.[1] as string;
    expect(cursor).toBeTruthy();
    const next = (await ops("ledger", user, "--limit", "1", "--cursor", cursor)).out;
    expect(next).toMatch(/10000 .*signup/);
    expect(next).not.toMatch(/--cursor/);
  });

  it("deducts only what is available, never into debt", async () => {
    const user = uniqueUser("ops");
    await authorizeChat(fx.deps, { userId: user, requestId: "r", model: "openai/gpt-5.2", inputTokens: 1000, maxOutputTokens: 600_000 });
    const refused = await ops("deduct", user, "5000", "--key", "fix-1", "--reason", "duplicate grant");
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/INSUFFICIENT_CREDITS/);
    const ok = await ops("deduct", user, "900", "--key", "fix-1", "--reason", "duplicate grant");
    expect(ok).toMatchObject({ code: 0 });
    expect(ok.out).toMatch(/balance 9100/);
  });

  it("refuses incomplete commands with usage (exit 2) and writes nothing", async () => {
    const user = uniqueUser("ops");
    await ensureAccount(fx.deps, user);
    expect((await ops("grant", user, "100", "--reason", "no key")).code).toBe(2);
    expect((await ops("grant", user, "-5", "--key", "k", "--reason", "r")).code).toBe(2);
    expect((await ops("frobnicate")).code).toBe(2);
    expect(JSON.parse((await ops("show", user)).out).balance).toBe(10_000);
  });

  it("audits one or all accounts and exits non-zero on drift", async () => {
    const user = uniqueUser("ops");
    await ensureAccount(fx.deps, user);
    expect((await ops("audit", user)).code).toBe(0);
    expect((await ops("audit", "--all")).out).toMatch(/no drift/);
    await fx.client.send(
      new UpdateItemCommand({
        TableName: fx.tableName,
        Key: { pk: { S: `U#${user}` }, sk: { S: "ACCOUNT" } },
        UpdateExpression: "SET #b = #b - :x",
        ExpressionAttributeNames: { "#b": "balance" },
        ExpressionAttributeValues: { ":x": { N: "1" } },
      }),
    );
    const single = await ops("audit", user);
    expect(single.code).toBe(1);
    expect(JSON.parse(single.out)).toMatchObject({ ok: false, drift: -1 });
    const all = await ops("audit", "--all");
    expect(all.code).toBe(1);
    expect(all.out).toContain(`DRIFT ${user}`);
    expect(all.out).toMatch(/1 with drift/);
  });

  it("exports the ledger as CSV with safe quoting", async () => {
    const user = uniqueUser("ops");
    await ops("grant", user, "7", "--key", "csv-1", "--reason", '=HYPERLINK("x"), "quoted"');
    const file = join(tmpdir(), `ledger-${user}.csv`);
    const result = await ops("export", user, "--out", file);
    expect(result.code).toBe(0);
    const lines = readFileSync(file, "utf8").trim().split("\n");
    expect(lines[0]).toBe("userId,seq,key,amount,balanceAfter,reason,bucket,createdAt,refs");
    expect(lines).toHaveLength(3);
    expect(lines[1]).toMatch(new RegExp(`^${user},1,signup,10000,10000,signup,allowance,`));
    expect(lines[2]).toContain(`${user},2,admin#csv-1,7,10007,admin,allowance,`);
    expect(lines[2]).toContain('"{""note"":""=HYPERLINK(\\""x\\""), \\""quoted\\""""');
  });

  it("neutralises a cell that starts with = + - or @ (user ids may)", async () => {
    // User ids allow = + - @, and the user id is the first cell of every row: the one place a
    // formula can start a cell. Each must come out as text ('…); negative amounts stay numbers.
    const users = ["=1+2", "+SUM", "-1+1", "@SUM"].map((prefix) => `${prefix}-${uniqueUser("csv")}`);
    for (const user of users) {
      await ensureAccount(fx.deps, user);
      expect((await ops("deduct", "--key", "k", "--reason", "r", "--", user, "3")).code).toBe(0);
      const file = join(tmpdir(), `ledger-formula-${users.indexOf(user)}-${process.pid}.csv`);
      // "--" ends the options: "-1+1-…" is a user id, not a flag
      expect((await ops("export", "--out", file, "--", user)).code).toBe(0);
      const rows = readFileSync(file, "utf8").trim().split("\n").slice(1);
      rmSync(file, { force: true });
      expect(rows).toHaveLength(2);
      for (const row of rows) expect(row.startsWith(`'${user},`)).toBe(true);
      expect(rows[1]).toContain(",admin#k,-3,9997,admin,");
    }
  });
});

describe("operator CLI: reads never write", () => {
  it("show of an unknown user answers 'no such account', exits 1 and writes nothing", async () => {
    await ensureAccount(fx.deps, uniqueUser("ops")); // the table is not empty
    const itemsBefore = await itemCount();
    const auditedBefore = auditedCount((await ops("audit", "--all")).out);
    const shown = await ops("show", "nobody-typo");
    expect(shown.code).toBe(1);
    expect(shown.out).toBe("");
    expect(shown.err).toMatch(/no such account nobody-typo/);
    expect(await itemCount()).toBe(itemsBefore);
    expect(auditedCount((await ops("audit", "--all")).out)).toBe(auditedBefore);
    // auditing a mistyped id is not a clean audit
    const audited = await ops("audit", "nobody-typo");
    expect(audited.code).toBe(1);
    expect(audited.err).toMatch(/no such account nobody-typo/);
    expect(await itemCount()).toBe(itemsBefore);
  });
});

describe("operator CLI: a reused --key", () => {
  it("with the same amount and reason is the idempotent success; with another amount or reason an error naming the stored one", async () => {
    const user = uniqueUser("ops");
    expect((await ops("grant", user, "2500", "--key", "t-7", "--reason", "outage")).code).toBe(0);
    const same = await ops("grant", user, "2500", "--key", "t-7", "--reason", "outage");
    expect(same).toMatchObject({ code: 0 });
    expect(same.out).toMatch(/already applied .*amount 2500/);

    const otherAmount = await ops("grant", user, "3000", "--key", "t-7", "--reason", "outage");
    expect(otherAmount.code).toBe(1);
    expect(otherAmount.out).toBe("");
    expect(otherAmount.err).toMatch(/^CONFLICT: key admin#t-7 was already used .* for amount 2500 .*not 3000/);
    const otherReason = await ops("grant", user, "2500", "--key", "t-7", "--reason", "goodwill");
    expect(otherReason.code).toBe(1);
    expect(otherReason.err).toMatch(/amount 2500 .*reason "outage".*reason "goodwill"/);
    // the same key as a deduction is another adjustment too
    expect((await ops("deduct", user, "2500", "--key", "t-7", "--reason", "outage")).code).toBe(1);
    expect(JSON.parse((await ops("show", user)).out).balance).toBe(12_500);
  });

  it("a deduction retried after the credits were spent still answers 'already applied'", async () => {
    const user = uniqueUser("ops");
    expect((await ops("deduct", user, "9000", "--key", "d-1", "--reason", "fix")).code).toBe(0);
    expect((await ops("deduct", user, "1000", "--key", "d-2", "--reason", "spend the rest")).code).toBe(0);
    const retried = await ops("deduct", user, "9000", "--key", "d-1", "--reason", "fix");
    expect(retried).toMatchObject({ code: 0 });
    expect(retried.out).toMatch(/already applied .*amount -9000/);
  });
});

describe("operator CLI: long runs", () => {
  it("audit --all and export --all report progress every --progress-every accounts", async () => {
    for (let i = 0; i < 5; i++) await ensureAccount(fx.deps, uniqueUser("bulk"));
    const audit = await ops("audit", "--all", "--progress-every", "2");
    const accounts = auditedCount(audit.out);
    expect(accounts).toBeGreaterThanOrEqual(5);
    const auditProgress = audit.err.split("\n").filter((line) => /^audited \d+ accounts \(\d+ drifting\)…$/.test(line));
    expect(auditProgress).toHaveLength(Math.floor(accounts / 2));
    expect(auditProgress[0]).toMatch(/^audited 2 accounts/);

    const file = join(tmpdir(), `ledger-all-${process.pid}.csv`);
    const exported = await ops("export", "--all", "--out", file, "--progress-every", "2");
    expect(exported.code).toBe(0);
    const exportProgress = exported.err.split("\n").filter((line) => /^exported \d+ accounts, \d+ entries…$/.test(line));
    expect(exportProgress).toHaveLength(Math.floor(accounts / 2));
    const rows = readFileSync(file, "utf8").trim().split("\n").length - 1;
    rmSync(file, { force: true });
    expect(exported.err).toContain(`exported ${rows} entries of ${accounts} account(s) to ${file}`);
    expect((await ops("audit", "--all", "--progress-every", "0")).code).toBe(2);
  });
});

describe("operator CLI: started as a script", () => {
  const dir = mkdtempSync(join(tmpdir(), "creditgate ops "));
  const link = join(dir, "repo link"); // a space and a symlink: both broke the "run directly" check
  symlinkSync(process.cwd(), link);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const run = (script: string, ...args: string[]) =>
    spawnSync(process.execPath, ["--import", "tsx", join(link, script), ...args], {
      cwd: link,
      env: { ...process.env, ...env },
      encoding: "utf8",
      timeout: 60_000,
    });

  it("recognises itself through a symlink and a space in the path", () => {
    const real = pathToFileURL(join(process.cwd(), "infra/ops/cli.ts")).href;
    expect(isMain(real, join(link, "infra/ops/cli.ts"))).toBe(true);
    expect(isMain(real, join(link, "infra/local/stripe-event.ts"))).toBe(false);
  });

  it("ops audit --all really audits from there, and stripe:event really runs", () => {
    const audit = run("infra/ops/cli.ts", "audit", "--all");
    // Before the fix this printed nothing and exited 0. The drift test above left one drifting
    // account in this table, so a real audit exits 1 (0 when run alone).
    expect(audit.stdout).toMatch(/audited [1-9]\d* accounts: (no drift|\d+ with drift)/);
    expect(audit.status, audit.stderr).toBe(/no drift/.test(audit.stdout) ? 0 : 1);
    const missing = run("infra/ops/cli.ts", "show", "nobody-from-a-script");
    expect(missing.status).toBe(1);
    const event = run("infra/local/stripe-event.ts"); // no event type: usage, exit 2
    expect(event.status).toBe(2);
    expect(event.stderr).toMatch(/usage: npm run stripe:event/);
  });
});
