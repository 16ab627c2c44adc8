import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { UpdateItemCommand } from "@aws-sdk/client-dynamodb";
import { beforeAll, describe, expect, inject, it } from "vitest";
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

describe("operator CLI", () => {
  it("shows an account and grants idempotently by the operator's key", async () => {
    const user = uniqueUser("ops");
    expect(JSON.parse((await ops("show", user)).out)).toMatchObject({ userId: user, balance: 10_000 });
    const first = await ops("grant", user, "2500", "--key", "ticket-42", "--reason", "goodwill, ticket #42");
    expect(first).toMatchObject({ code: 0 });
    expect(first.out).toMatch(/granted 2500 credits.*balance 12500/);
    const again = await ops("grant", user, "2500", "--key", "ticket-42", "--reason", "goodwill, ticket #42");
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
});
