import { describe, expect, it } from "vitest";
import type { AccountRecord } from "../../lib/ledger/account.js";
import { admissionRules, holdsFor, refusedRules } from "../../lib/ledger/admission.js";
import { emptyMap } from "../../lib/own-keys.js";
import { catalog } from "../../lib/catalog.js";
import { newAccount } from "../../lib/ledger/ensure-account.js";

const NOW = 1_000_000;
const account = (overrides: Partial<AccountRecord> = {}): AccountRecord => ({
  ...newAccount({ catalog }, "u", 0).account,
  balance: 100,
  available: 100,
  allowanceBase: 100,
  nextGrantAt: undefined,
  ...overrides,
});
const rules = (reserved: number, requestId = "r1") =>
  admissionRules({
    requestId,
    reserved,
    now: NOW,
    minute: 16,
    plans: { catalogPlans: ["free", "pro"], includingModel: ["free"], allowingReservation: ["free"], holdCaps: [{ plans: ["free"], limit: 2 }], rateLimits: [{ plans: ["free"], limit: 3 }] },
  });

describe("admission rules (pure)", () => {
  it("admits exactly at the boundaries and names each refusal", () => {
    expect(refusedRules(rules(100), account())).toEqual([]);
    expect(refusedRules(rules(101), account())).toEqual(["affordable"]);
    // no item: no plan, served as free (which these rules admit), so only existence, holds and credits refuse
    expect(refusedRules(rules(1), undefined)).toEqual(["accountExists", "underHoldCap", "affordable"]);
    expect(refusedRules(rules(1), account({ nextGrantAt: NOW }))).toEqual(["noGrantDue"]);
    expect(refusedRules(rules(1), account({ nextGrantAt: NOW + 1 }))).toEqual([]);
    const rateCounters = emptyMap<number>();
    rateCounters["16"] = 3;
    expect(refusedRules(rules(1), account({ rateCounters }))).toEqual(["underRateLimit"]);
    rateCounters["16"] = 2;
    expect(refusedRules(rules(1), account({ rateCounters }))).toEqual([]);
  });

  it("an existing hold is found by its own key only, never by a name every object answers for", () => {
    const holds = emptyMap<AccountRecord["holds"][string]>();
    // a null-prototype map: `__proto__` is an ordinary own key (as lib/dynamo/items.ts reads it)
    Object.defineProperty(holds, "__proto__", { value: { reserved: 1, model: "m", createdAt: 0, expiresAt: 1, tag: "t" }, enumerable: true });
    expect(refusedRules(rules(1, "__proto__"), account({ holds }))).toEqual(["hasNoSuchHold"]);
    for (const name of ["constructor", "toString", "valueOf", "hasOwnProperty"]) {
      expect(refusedRules(rules(1, name), account({ holds }))).toEqual([]);
      // the same names in an ordinary object are still not holds
      expect(holdsFor({ kind: "notExists", path: ["holds", { key: name }] }, account({ holds: {} }))).toBe(true);
    }
  });

  it("the hold cap counts open holds", () => {
    const holds = emptyMap<AccountRecord["holds"][string]>();
    holds.a = { reserved: 1, model: "m", createdAt: 0, expiresAt: 1, tag: "t" };
    expect(refusedRules(rules(1), account({ holds, available: 99 }))).toEqual([]);
    holds.b = { reserved: 1, model: "m", createdAt: 0, expiresAt: 1, tag: "t" };
    expect(refusedRules(rules(1), account({ holds, available: 98 }))).toEqual(["underHoldCap"]);
  });
});
