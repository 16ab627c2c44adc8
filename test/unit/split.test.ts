import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { applyToSplit, splitOf } from "../../lib/ledger/split.js";

describe("allowance/purchased split", () => {
  it("spends allowance before purchased credits", () => {
    expect(splitOf({ allowanceBase: 100, purchasedBase: 500, spent: 30 })).toEqual({ allowance: 70, purchased: 500 });
    expect(splitOf({ allowanceBase: 100, purchasedBase: 500, spent: 150 })).toEqual({ allowance: 0, purchased: 450 });
  });

  it("carries spending beyond both buckets as negative allowance (debt)", () => {
    expect(splitOf({ allowanceBase: 100, purchasedBase: 50, spent: 200 })).toEqual({ allowance: -50, purchased: 0 });
  });

  it("a deduction takes its own bucket first, then the other, then debt", () => {
    expect(applyToSplit({ allowance: 10, purchased: 100 }, -40, "purchased")).toEqual({ allowance: 10, purchased: 60 });
    expect(applyToSplit({ allowance: 10, purchased: 30 }, -40, "purchased")).toEqual({ allowance: 0, purchased: 0 });
    expect(applyToSplit({ allowance: 10, purchased: 30 }, -100, "purchased")).toEqual({ allowance: -60, purchased: 0 });
    expect(applyToSplit({ allowance: 10, purchased: 30 }, 5, "purchased")).toEqual({ allowance: 10, purchased: 35 });
  });

  it("always sums to the balance and never makes purchased negative", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: -1_000, max: 1_000_000 }),
        fc.nat(1_000_000),
        fc.nat(3_000_000),
        fc.integer({ min: -2_000_000, max: 2_000_000 }),
        fc.constantFrom("allowance" as const, "purchased" as const),
        (allowanceBase, purchasedBase, spent, delta, bucket) => {
          const split = splitOf({ allowanceBase, purchasedBase, spent });
          expect(split.allowance + split.purchased).toBe(allowanceBase + purchasedBase - spent);
          expect(split.purchased).toBeGreaterThanOrEqual(0);
          const next = applyToSplit(split, delta, bucket);
          expect(next.allowance + next.purchased).toBe(split.allowance + split.purchased + delta);
          expect(next.purchased).toBeGreaterThanOrEqual(0);
        },
      ),
    );
  });
});
