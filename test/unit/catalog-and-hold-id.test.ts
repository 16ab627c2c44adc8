import { describe, expect, it } from "vitest";
import { catalog, comparePlans, isModelId, isPlanId, validateCatalog } from "../../lib/catalog.js";
import { decodeHoldId, encodeHoldId } from "../../lib/ledger/hold-id.js";

describe("catalog", () => {
  it("holds the product defaults", () => {
    expect(catalog.plans.free?.monthlyAllowance).toBe(10_000);
    expect(catalog.plans.pro?.monthlyAllowance).toBe(100_000);
    expect(catalog.packs.enterprise?.credits).toBe(1_000_000);
    expect(catalog.signupBonus).toBe(10_000);
  });
  it("orders plans free < plus < pro", () => {
    expect(comparePlans("free", "pro")).toBe(1);
    expect(comparePlans("pro", "plus")).toBe(-1);
    expect(comparePlans("plus", "plus")).toBe(0);
  });
  it("does not treat inherited object keys as catalog entries", () => {
    expect(isPlanId("toString")).toBe(false);
    expect(isModelId("constructor")).toBe(false);
  });
  it("rejects a catalog whose model names a missing tier or whose ranks collide", () => {
    const broken = structuredClone(catalog);
    broken.models["x/y"] = "medium";
    expect(() => validateCatalog(broken)).toThrow(/unknown tier/);
    const ranks = structuredClone(catalog);
    (ranks.plans.plus as { rank: number }).rank = 2;
    expect(() => validateCatalog(ranks)).toThrow(/distinct/);
  });
});

describe("hold ids", () => {
  it("round-trip and reject forgeries that do not parse", () => {
    const ref = { userId: "u1", requestId: "r1", tag: "Ab-_9x", seq: 3, balance: -20, model: "m", reserved: 7 };
    expect(decodeHoldId(encodeHoldId(ref))).toEqual(ref);
    expect(decodeHoldId("hold_notbase64json")).toBeUndefined();
    expect(decodeHoldId("h1")).toBeUndefined();
    const wrongShape = `hold_${Buffer.from(JSON.stringify(["u", "r", 1])).toString("base64url")}`;
    expect(decodeHoldId(wrongShape)).toBeUndefined();
  });
});
