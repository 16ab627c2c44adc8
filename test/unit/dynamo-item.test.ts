import type { AttributeValue } from "@aws-sdk/client-dynamodb";
import { describe, expect, it } from "vitest";
import { catalog } from "../../lib/catalog.js";
import type { AccountRecord, HoldRecord, LedgerEntry } from "../../lib/ledger/account.js";
import { accountFromItem, accountItem, entryFromItem, entryItem, storedAccountName, storedPath } from "../../lib/ledger/dynamo-item.js";
import { newAccount } from "../../lib/ledger/ensure-account.js";
import { emptyMap, ownValue } from "../../lib/own-keys.js";

/**
 * The stored account item is a format (every item already in a table has it): its names are pinned
 * here, whatever the model calls them (lib/ledger/dynamo-item.ts maps the two).
 */

const hold = (reserved: number, tag: string): HoldRecord => ({
  reserved,
  model: "anthropic/claude-sonnet-4.5",
  createdAt: 1_000,
  tag,
  expiresAt: 901_000,
});

/** An account with something in every map, under ordinary and hostile keys. */
function busyAccount(): AccountRecord {
  const { account } = newAccount({ catalog }, "user-1", 0);
  for (const [requestId, tag] of [
    ["r1", "tag1"],
    ["__proto__", "tag2"],
    ["constructor", "tag3"],
  ] as const) {
    account.holds[requestId] = hold(100, tag);
    account.holdSeq[requestId] = 1;
    account.holdBalance[requestId] = 10_000;
  }
  account.available -= 300;
  account.outbox["settle#r0#tag0"] = { amount: -42, refs: { requestId: "r0", model: "m" }, createdAt: 2_000 };
  account.outboxSeq["settle#r0#tag0"] = 1;
  account.outboxBalance["settle#r0#tag0"] = 10_000;
  account.rateCounters["28333"] = 3;
  return account;
}

const mapOf = (value: AttributeValue | undefined): Record<string, AttributeValue> => {
  if (value?.M === undefined) throw new Error("not a map");
  return value.M;
};

describe("the stored account item (lib/ledger/dynamo-item.ts)", () => {
  it("keeps its short stored names: holds.<#requestId>.{a,m,c,t,e}, holdSeq, holdBal, pend, pendSeq, pendBal, rl", () => {
    const item = accountItem(busyAccount());
    expect(Object.keys(item).sort()).toEqual(
      [
        "pk",
        "sk",
        "userId",
        "plan",
        "interval",
        "createdAt",
        "balance",
        "available",
        "seq",
        "allowanceBase",
        "purchasedBase",
        "spent",
        "holds",
        "holdSeq",
        "holdBal",
        "pend",
        "pendSeq",
        "pendBal",
        "periodIndex",
        "periodAnchor",
        "nextGrantAt",
        "grantShard",
        "rl",
      ].sort(),
    );
    expect(item.pk).toEqual({ S: "U#user-1" });
    expect(item.sk).toEqual({ S: "ACCOUNT" });
    const holds = mapOf(item.holds);
    expect(Object.keys(holds).sort()).toEqual(["#__proto__", "#constructor", "#r1"]);
    expect(mapOf(holds["#r1"])).toEqual({
      a: { N: "100" },
      m: { S: "anthropic/claude-sonnet-4.5" },
      c: { N: "1000" },
      t: { S: "tag1" },
      e: { N: "901000" },
    });
    expect(Object.keys(mapOf(item.holdSeq)).sort()).toEqual(["#__proto__", "#constructor", "#r1"]);
    expect(Object.keys(mapOf(item.holdBal)).sort()).toEqual(["#__proto__", "#constructor", "#r1"]);
    // keys the ledger chose are stored as they are
    expect(Object.keys(mapOf(item.pend))).toEqual(["settle#r0#tag0"]);
    expect(mapOf(mapOf(item.pend)["settle#r0#tag0"])).toMatchObject({ amount: { N: "-42" }, createdAt: { N: "2000" } });
    expect(mapOf(item.pendSeq)).toEqual({ "settle#r0#tag0": { N: "1" } });
    expect(mapOf(item.pendBal)).toEqual({ "settle#r0#tag0": { N: "10000" } });
    expect(mapOf(item.rl)).toEqual({ "28333": { N: "3" } });
  });

  it("reads back exactly the account it stored, hostile requestIds as own keys of null-prototype maps", () => {
    const account = busyAccount();
    const back = accountFromItem(accountItem(account)) as AccountRecord;
    expect(back).toEqual(account);
    expect(Object.getPrototypeOf(back.holds)).toBeNull();
    expect(Object.keys(back.holds).sort()).toEqual(["__proto__", "constructor", "r1"]);
    expect(Object.hasOwn(back.holds, "__proto__")).toBe(true);
    expect(ownValue(back.holds, "__proto__")).toEqual(hold(100, "tag2"));
    expect(ownValue(back.holds, "constructor")).toEqual(hold(100, "tag3"));
    expect(Object.hasOwn(back.holds, "toString")).toBe(false);
    expect(Object.getPrototypeOf(ownValue(back.holds, "r1"))).toBeNull();
    expect(accountFromItem(undefined)).toBeUndefined();
  });

  it("names model paths by their stored names, keys chosen outside encoded", () => {
    expect(storedPath(["holds", { key: "__proto__" }, "reserved"])).toEqual(["holds", "#__proto__", "a"]);
    expect(storedPath(["holds", { key: "r1" }, "expiresAt"])).toEqual(["holds", "#r1", "e"]);
    expect(storedPath(["holdBalance", { key: "r1" }])).toEqual(["holdBal", "#r1"]);
    expect(storedPath(["rateCounters", "28333"])).toEqual(["rl", "28333"]);
    expect(storedPath(["outbox", "settle#r0#tag0"])).toEqual(["pend", "settle#r0#tag0"]);
    expect(storedPath(["outboxSeq", "settle#r0#tag0"])).toEqual(["pendSeq", "settle#r0#tag0"]);
    expect(storedPath(["outboxBalance", "settle#r0#tag0"])).toEqual(["pendBal", "settle#r0#tag0"]);
    expect(storedPath(["available"])).toEqual(["available"]);
    // a name every object answers for is no entry of the name tables
    expect(storedAccountName("constructor" as keyof AccountRecord)).toBe("constructor");
    expect(storedPath(["holds", { key: "r1" }, "constructor"])).toEqual(["holds", "#r1", "constructor"]);
  });

  it("stores a ledger entry's seq as entrySeq (the history index's sort key) and reads it back", () => {
    const entry: LedgerEntry = {
      userId: "user-1",
      key: "signup",
      amount: 10_000,
      balanceAfter: 10_000,
      seq: 1,
      reason: "signup",
      bucket: "allowance",
      refs: emptyMap(),
      createdAt: 0,
    };
    const item = entryItem(entry);
    expect(item.entrySeq).toEqual({ N: "1" });
    expect(item.seq).toBeUndefined();
    expect(item.sk).toEqual({ S: "E#signup" });
    expect(entryFromItem(item)).toEqual(entry);
  });
});
