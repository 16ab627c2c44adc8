import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  proratedPlanChange,
  yearStartBefore,
  allowancePeriodAt,
  prorationInstant,
  readUpgradeMetadata,
  topUpOf,
  type UpgradeTerms,
  upgradeKey,
  upgradeMetadata,
  upgradeTopUp,
} from "../../lib/billing/upgrade-top-up.js";
import { catalog } from "../../lib/catalog.js";

const DAY = 86_400;
const HOUR = 3_600;
/** 2026-01-01T12:00:00Z in seconds, and a 30-day month from it */
const START = 1_767_268_800;
const END = START + 30 * DAY;
const plusToPro = { fromAllowance: 40_000, toAllowance: 100_000, periodStart: START, periodEnd: END };

describe("upgradeTopUp (the rule)", () => {
  it("gives the whole difference at the start of the period and nothing at its end", () => {
    expect(upgradeTopUp({ ...plusToPro, at: START })).toBe(60_000);
    expect(upgradeTopUp({ ...plusToPro, at: END })).toBe(0);
    expect(upgradeTopUp({ ...plusToPro, at: END + DAY })).toBe(0);
    // an instant before the period (clock skew) is not worth more than the whole period
    expect(upgradeTopUp({ ...plusToPro, at: START - DAY })).toBe(60_000);
  });

  it("prorates by the time left, floored (the worked examples of docs/billing.md)", () => {
    expect(upgradeTopUp({ ...plusToPro, at: START + 60 })).toBe(59_998); // 59,998.6
    expect(upgradeTopUp({ ...plusToPro, at: START + 15 * DAY })).toBe(30_000);
    expect(upgradeTopUp({ ...plusToPro, at: END - 2 * HOUR })).toBe(166); // 166.7: not 60,000 for cents
    expect(upgradeTopUp({ ...plusToPro, at: END - HOUR })).toBe(83); // 60,000 / 720
    expect(upgradeTopUp({ ...plusToPro, at: END - 1 })).toBe(0); // 0.02
  });

  it("gives nothing for a downgrade or the same allowance", () => {
    expect(upgradeTopUp({ ...plusToPro, fromAllowance: 100_000, toAllowance: 40_000, at: START })).toBe(0);
    expect(upgradeTopUp({ ...plusToPro, toAllowance: 40_000, at: START })).toBe(0);
  });

  it("refuses what it cannot compute exactly: an empty period, fractions, unsafe numbers", () => {
    expect(() => upgradeTopUp({ ...plusToPro, periodEnd: START, at: START })).toThrow(RangeError);
    expect(() => upgradeTopUp({ ...plusToPro, at: START + 0.5 })).toThrow(RangeError);
    expect(() => upgradeTopUp({ ...plusToPro, toAllowance: Number.MAX_SAFE_INTEGER + 2, at: START })).toThrow(RangeError);
  });

  it("is exact where floating point is not (products beyond 2^53)", () => {
    // 7,831,109 × 1,422,687,321,666 / 1,538,204,668,297 is exactly 7,243,002; in floating point
    // the product rounds below it and the floor gives 7,243,001
    const input = { fromAllowance: 0, toAllowance: 7_831_109, periodStart: 0, periodEnd: 1_538_204_668_297, at: 115_517_346_631 };
    expect(Math.floor((7_831_109 * (input.periodEnd - input.at)) / input.periodEnd)).toBe(7_243_001);
    expect(upgradeTopUp(input)).toBe(7_243_002);
  });
});

describe("upgradeTopUp properties (fast-check)", () => {
  const allowance = fc.integer({ min: 0, max: 10_000_000 });
  /** a period (seconds, up to ten years long) and an instant anywhere around it */
  const periodAndInstant = fc
    .record({ start: fc.integer({ min: 0, max: 4_000_000_000 }), length: fc.integer({ min: 1, max: 10 * 366 * DAY }) })
    .chain(({ start, length }) =>
      fc.record({
        periodStart: fc.constant(start),
        periodEnd: fc.constant(start + length),
        at: fc.integer({ min: start - length, max: start + 2 * length }),
      }),
    );
  const input = fc.record({ fromAllowance: allowance, toAllowance: allowance }).chain((allowances) =>
    periodAndInstant.map((period) => ({ ...allowances, ...period })),
  );

  it("is between 0 and the difference; 0 without a positive difference or after the period", () => {
    fc.assert(
      fc.property(input, (value) => {
        const topUp = upgradeTopUp(value);
        const difference = value.toAllowance - value.fromAllowance;
        expect(Number.isSafeInteger(topUp)).toBe(true);
        expect(topUp).toBeGreaterThanOrEqual(0);
        expect(topUp).toBeLessThanOrEqual(Math.max(0, difference));
        if (difference <= 0 || value.at >= value.periodEnd) expect(topUp).toBe(0);
        if (value.at <= value.periodStart) expect(topUp).toBe(Math.max(0, difference));
      }),
    );
  });

  it("is the floor of difference × time left / period: never more than paid for, less by under one credit", () => {
    fc.assert(
      fc.property(input, (value) => {
        const difference = BigInt(value.toAllowance - value.fromAllowance);
        fc.pre(difference > 0n && value.at >= value.periodStart && value.at < value.periodEnd);
        const topUp = BigInt(upgradeTopUp(value));
        const length = BigInt(value.periodEnd - value.periodStart);
        const owed = difference * BigInt(value.periodEnd - value.at); // × 1/length
        expect(topUp * length <= owed).toBe(true);
        expect((topUp + 1n) * length > owed).toBe(true);
      }),
    );
  });

  it("is monotone non-increasing in the instant: upgrading later never gives more", () => {
    fc.assert(
      fc.property(input, fc.integer({ min: 0, max: 400 * DAY }), (value, later) => {
        expect(upgradeTopUp({ ...value, at: value.at + later })).toBeLessThanOrEqual(upgradeTopUp(value));
      }),
    );
  });

  it("two upgrades' top-ups in one period never exceed what each proration paid for, together", () => {
    // up at t1, down (nothing back), up at t2: the user paid two prorations; each top-up is at most its share
    fc.assert(
      fc.property(input, fc.integer({ min: 0, max: 400 * DAY }), (value, later) => {
        fc.pre(value.toAllowance > value.fromAllowance && value.at >= value.periodStart);
        const first = upgradeTopUp(value);
        const second = upgradeTopUp({ ...value, at: value.at + later });
        const difference = value.toAllowance - value.fromAllowance;
        const length = value.periodEnd - value.periodStart;
        const paidFor = (at: number) => (difference * Math.max(0, value.periodEnd - at)) / length;
        expect(first + second).toBeLessThanOrEqual(paidFor(value.at) + paidFor(value.at + later) + 1e-6);
      }),
    );
  });
});

describe("the proration instant and the allowance period", () => {
  const subscription = { start: START, end: END };

  it("sends Stripe whole seconds inside the subscription's period", () => {
    expect(prorationInstant((START + 100) * 1000 + 999, subscription)).toBe(START + 100);
    expect(prorationInstant((START - 5) * 1000, subscription)).toBe(START);
    expect(prorationInstant((END + 5) * 1000, subscription)).toBe(END);
  });

  it("monthly plans: the subscription's period", () => {
    expect(allowancePeriodAt("month", subscription, START + 3 * DAY)).toEqual(subscription);
  });

  it("annual plans: the calendar month in progress, anchored at the subscription's start", () => {
    const year = { start: START, end: Date.UTC(2027, 0, 1, 12) / 1000 };
    const april = Date.UTC(2026, 3, 1, 12) / 1000;
    const may = Date.UTC(2026, 4, 1, 12) / 1000;
    expect(allowancePeriodAt("year", year, april + 15 * DAY)).toEqual({ start: april, end: may });
    expect(allowancePeriodAt("year", year, april)).toEqual({ start: april, end: may });
    expect(allowancePeriodAt("year", year, START)).toEqual({ start: START, end: Date.UTC(2026, 1, 1, 12) / 1000 });
    // month 11 ends with the year
    expect(allowancePeriodAt("year", year, year.end - HOUR)).toEqual({ start: Date.UTC(2026, 11, 1, 12) / 1000, end: year.end });
  });

  it("annual plans: a month anchored on the 31st is clamped to short months, as the schedule does", () => {
    const anchor = Date.UTC(2026, 0, 31, 10) / 1000;
    const year = { start: anchor, end: Date.UTC(2027, 0, 31, 10) / 1000 };
    expect(allowancePeriodAt("year", year, Date.UTC(2026, 2, 1) / 1000)).toEqual({
      start: Date.UTC(2026, 1, 28, 10) / 1000,
      end: Date.UTC(2026, 2, 31, 10) / 1000,
    });
  });
});

describe("the upgrade terms in the subscription metadata", () => {
  const terms: UpgradeTerms = { from: "plus", to: "pro", interval: "month", at: START + 60, periodStart: START, periodEnd: END };
  const written = { userId: "u_1", plan: "pro", interval: "month", ...upgradeMetadata(terms) };

  it("round-trips what change-plan writes, and both paths compute one amount from it", () => {
    expect(written).toMatchObject({ upgradeFrom: "plus", upgradeAt: String(START + 60), upgradePeriodStart: String(START), upgradePeriodEnd: String(END) });
    expect(readUpgradeMetadata(written)).toEqual(terms);
    expect(topUpOf(terms, catalog)).toBe(59_998);
    expect(upgradeKey("in_123")).toBe("upgrade#in_123");
  });

  it("a downgrade removes every key (Stripe deletes a key set to \"\")", () => {
    expect(Object.values(upgradeMetadata(undefined))).toEqual(["", "", "", "", ""]);
    expect(readUpgradeMetadata({ ...written, ...upgradeMetadata(undefined) })).toBeUndefined();
  });

  it("is strict: digits only, known plans and interval, an instant inside a non-empty period", () => {
    const broken: Record<string, string>[] = [
      { upgradeAt: "" },
      { upgradeAt: "1e9" },
      { upgradeAt: "-5" },
      { upgradeAt: " 1767268860" },
      { upgradePeriodEnd: "12345678901234" },
      { upgradeFrom: "gold" },
      { upgradeFrom: "__proto__" },
      { plan: "enterprise" },
      { interval: "week" },
      { upgradeAt: String(START - 1) },
      { upgradeAt: String(END + 1) },
      { upgradePeriodEnd: String(START) },
    ];
    for (const patch of broken) expect(readUpgradeMetadata({ ...written, ...patch }), JSON.stringify(patch)).toBeUndefined();
    // metadata written before the terms carried the instant (upgradeFrom and upgradePeriodStart only)
    expect(readUpgradeMetadata({ plan: "pro", interval: "month", upgradeFrom: "plus", upgradePeriodStart: String(START) })).toBeUndefined();
    expect(readUpgradeMetadata(undefined)).toBeUndefined();
  });
});

describe("a plan change read from a proration invoice's lines (portal switches)", () => {
  const planOfPrice = (price: string) =>
    ({
      price_plus_yearly: { plan: "plus", interval: "year" },
      price_pro_yearly: { plan: "pro", interval: "year" },
      price_pro_monthly: { plan: "pro", interval: "month" },
    })[price] as { plan: "plus" | "pro"; interval: "month" | "year" } | undefined;
  const line = (price: string, amount: number | undefined, periodStart = 1_000, periodEnd = 2_000) => ({ price, amount, periodStart, periodEnd });

  it("an upgrade: credited plus, charged pro; a downgrade the other way; the charged line may be 0", () => {
    expect(proratedPlanChange([line("price_plus_yearly", -500), line("price_pro_yearly", 1_200)], planOfPrice)).toEqual({
      from: "plus",
      to: "pro",
      interval: "year",
      at: 1_000,
      periodEnd: 2_000,
    });
    expect(proratedPlanChange([line("price_pro_yearly", -1_200), line("price_plus_yearly", 0)], planOfPrice)).toMatchObject({ from: "pro", to: "plus" });
  });

  it("nothing it cannot read as one plan change: a price that is no plan, two intervals, the same plan, missing amounts or periods, several lines", () => {
    const none = [
      [line("price_plus_yearly", -500), line("price_pack_starter", 1_200)],
      [line("price_plus_yearly", -500), line("price_pro_monthly", 1_200)],
      [line("price_pro_yearly", -500), line("price_pro_yearly", 1_200)],
      [line("price_plus_yearly", undefined), line("price_pro_yearly", 1_200)],
      [line("price_plus_yearly", -500), line("price_pro_yearly", 1_200, 2_000, 2_000)],
      [line("price_plus_yearly", -500), line("price_pro_yearly", 1_200), line("price_pro_yearly", 1)],
      [line("price_plus_yearly", -500), line("price_plus_yearly", -5), line("price_pro_yearly", 1_200)],
      [line("price_pro_yearly", 1_200)],
    ];
    for (const lines of none) expect(proratedPlanChange(lines, planOfPrice)).toBeUndefined();
  });

  it("an annual period's start is one calendar year before its end", () => {
    expect(yearStartBefore(Date.UTC(2027, 0, 1, 12) / 1000)).toBe(Date.UTC(2026, 0, 1, 12) / 1000);
    expect(yearStartBefore(Date.UTC(2029, 2, 15) / 1000)).toBe(Date.UTC(2028, 2, 15) / 1000);
  });

  it("a year ending on 29 February started on 28 February, never on 1 March", () => {
    // a subscription anchored on 29 February 2024 renews on 28 February 2027 and 29 February 2028
    expect(yearStartBefore(Date.UTC(2028, 1, 29, 9, 30, 5) / 1000)).toBe(Date.UTC(2027, 1, 28, 9, 30, 5) / 1000);
    // after a leap year the end is the 28th and the start may have been the 29th: the earlier is taken
    expect(yearStartBefore(Date.UTC(2029, 1, 28, 9) / 1000)).toBe(Date.UTC(2028, 1, 28, 9) / 1000);
    // every end of any day of 2025-2032 starts 365 or 366 days earlier, on the same day or the month's last
    for (let day = Date.UTC(2025, 0, 1); day < Date.UTC(2033, 0, 1); day += 86_400_000) {
      const end = day / 1000 + 3_723;
      const start = yearStartBefore(end);
      expect([365, 366]).toContain(Math.round((end - start) / 86_400));
      expect(new Date(start * 1000).getUTCMonth()).toBe(new Date(end * 1000).getUTCMonth());
    }
  });
});
