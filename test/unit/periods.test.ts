import { describe, expect, it } from "vitest";
import { DAY_MS, periodIndexAt, periodStart } from "../../lib/periods.js";

const anchor = Date.UTC(2026, 0, 31, 10, 0, 0);

describe("30-day periods anchored at creation", () => {
  const cadence = { kind: "days", days: 30 } as const;
  it("day 29 is still period 0, day 30 starts period 1", () => {
    expect(periodIndexAt(anchor, anchor + 29 * DAY_MS, cadence)).toBe(0);
    expect(periodIndexAt(anchor, anchor + 30 * DAY_MS - 1, cadence)).toBe(0);
    expect(periodIndexAt(anchor, anchor + 30 * DAY_MS, cadence)).toBe(1);
    expect(periodIndexAt(anchor, anchor + 7 * 30 * DAY_MS + 5, cadence)).toBe(7);
  });
  it("period starts are anchor + k * 30 days", () => {
    expect(periodStart(anchor, 2, cadence)).toBe(anchor + 60 * DAY_MS);
  });
});

describe("calendar months for annual plans", () => {
  const cadence = { kind: "calendarMonth" } as const;
  it("clamps the anchor day to short months and keeps the anchor day after", () => {
    expect(new Date(periodStart(anchor, 1, cadence)).toISOString()).toBe("2026-02-28T10:00:00.000Z");
    expect(new Date(periodStart(anchor, 2, cadence)).toISOString()).toBe("2026-03-31T10:00:00.000Z");
    expect(new Date(periodStart(anchor, 12, cadence)).toISOString()).toBe("2027-01-31T10:00:00.000Z");
  });
  it("finds the month containing a moment, at the exact boundaries", () => {
    const feb = periodStart(anchor, 1, cadence);
    expect(periodIndexAt(anchor, feb - 1, cadence)).toBe(0);
    expect(periodIndexAt(anchor, feb, cadence)).toBe(1);
    for (let month = 0; month < 12; month++) {
      const start = periodStart(anchor, month, cadence);
      expect(periodIndexAt(anchor, start, cadence)).toBe(month);
      expect(periodIndexAt(anchor, start + 3 * DAY_MS, cadence)).toBe(month);
    }
  });
});
