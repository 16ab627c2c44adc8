import { describe, expect, it } from "vitest";
import { catalog } from "../../lib/catalog.js";
import type { SubscriptionState } from "../../lib/ledger/account.js";
import { createPriceBook } from "../../lib/billing/prices.js";
import { annualYearLeft } from "../../lib/billing/subscription.js";
import { TEST_PRICES } from "../helpers/prices.js";

/** Which subscription changes end an annual year early, and when (lib/billing/subscription.ts). */
const deps = { prices: createPriceBook(TEST_PRICES, catalog) };
const DAY = 86_400_000;
const START = Date.UTC(2026, 0, 1, 12);
const END = Date.UTC(2027, 0, 1, 12);
const annual: SubscriptionState = {
  id: "sub_1",
  status: "active",
  priceId: "price_pro_yearly",
  periodStart: START,
  periodEnd: END,
  cancelAtPeriodEnd: false,
  lastEventAt: START,
};
const later = (change: Partial<SubscriptionState>): SubscriptionState => ({ ...annual, lastEventAt: START + 100 * DAY, ...change });

describe("an annual year left early", () => {
  it("an immediate cancellation ends it when it happened", () => {
    expect(annualYearLeft(deps, annual, later({ status: "canceled" }))).toEqual([{ anchor: START, endedAt: START + 100 * DAY }]);
    expect(annualYearLeft(deps, annual, later({ status: "incomplete_expired" }))).toEqual([{ anchor: START, endedAt: START + 100 * DAY }]);
  });

  it("a portal switch to monthly or to another annual period ends it at the new period's start", () => {
    const at = START + 120 * DAY;
    expect(annualYearLeft(deps, annual, later({ priceId: "price_pro_monthly", periodStart: at, periodEnd: at + 31 * DAY }))).toEqual([{ anchor: START, endedAt: at }]);
    expect(annualYearLeft(deps, annual, later({ priceId: "price_plus_yearly", periodStart: at, periodEnd: at + 365 * DAY }))).toEqual([{ anchor: START, endedAt: at }]);
    // whatever its status: a past-due or unpaid subscription switched in the portal left the year too
    expect(annualYearLeft(deps, annual, later({ status: "past_due", priceId: "price_pro_monthly", periodStart: at, periodEnd: at + 31 * DAY }))).toEqual([{ anchor: START, endedAt: at }]);
    expect(annualYearLeft(deps, annual, later({ status: "unpaid", priceId: "price_pro_monthly", periodStart: at, periodEnd: at + 31 * DAY }))).toEqual([{ anchor: START, endedAt: at }]);
  });

  it("a switch whose own event never came, seen in a later cancellation, ends the year at the switch (RT6-1); a new annual period canceled ends too", () => {
    const at = START + 120 * DAY;
    const canceledLater = { status: "canceled", periodStart: at, lastEventAt: at + 2 * DAY };
    expect(annualYearLeft(deps, annual, later({ ...canceledLater, priceId: "price_pro_monthly", periodEnd: at + 31 * DAY }))).toEqual([{ anchor: START, endedAt: at }]);
    expect(annualYearLeft(deps, annual, later({ ...canceledLater, priceId: "price_plus_yearly", periodEnd: at + 365 * DAY }))).toEqual([
      { anchor: START, endedAt: at },
      { anchor: at, endedAt: at + 2 * DAY },
    ]);
  });

  it("a renewal, a plan change within the year, an unpaid or paused state, and a monthly subscription leave nothing", () => {
    expect(annualYearLeft(deps, annual, later({ periodStart: END, periodEnd: END + 365 * DAY }))).toEqual([]);
    expect(annualYearLeft(deps, annual, later({ priceId: "price_plus_yearly" }))).toEqual([]);
    expect(annualYearLeft(deps, annual, later({ status: "unpaid" }))).toEqual([]);
    expect(annualYearLeft(deps, annual, later({ status: "paused" }))).toEqual([]);
    const monthly = { ...annual, priceId: "price_pro_monthly", periodEnd: START + 31 * DAY };
    expect(annualYearLeft(deps, monthly, later({ priceId: "price_pro_yearly", periodStart: START + 10 * DAY }))).toEqual([]);
    expect(annualYearLeft(deps, monthly, later({ ...monthly, status: "canceled" }))).toEqual([]);
    // an ended subscription's later events end nothing more
    expect(annualYearLeft(deps, { ...annual, status: "canceled" }, later({ status: "canceled" }))).toEqual([]);
  });

  it("a cancellation in a renewed year the account has not seen yet ends that year, never at a time before its start", () => {
    const renewed = later({ status: "canceled", periodStart: END, periodEnd: END + 365 * DAY, lastEventAt: END + 10 * DAY });
    expect(annualYearLeft(deps, annual, renewed)).toEqual([{ anchor: END, endedAt: END + 10 * DAY }]);
    // (a subscription created the day before its period starts, canceled before it began)
    const created = { ...annual, lastEventAt: START - 2 * DAY };
    expect(annualYearLeft(deps, created, later({ status: "canceled", lastEventAt: START - DAY }))).toEqual([{ anchor: START, endedAt: START }]);
    // an older state than the one recorded is stale: it ends nothing by itself
    expect(annualYearLeft(deps, annual, later({ status: "canceled", lastEventAt: START - DAY }))).toEqual([]);
  });

  it("any state of the subscription, stale ones too, whose period starts inside a paid year ends that year there at the latest (RT7-3)", () => {
    const years = [{ anchor: START, shares: [], subscription: "sub_1" }];
    const switchedAt = START + 120 * DAY;
    const staleMonthly = { ...annual, priceId: "price_pro_monthly", periodStart: switchedAt, periodEnd: switchedAt + 31 * DAY, lastEventAt: switchedAt };
    const recorded = { ...annual, periodStart: switchedAt + 2 * DAY, periodEnd: switchedAt + 367 * DAY, lastEventAt: switchedAt + 2 * DAY };
    expect(annualYearLeft(deps, recorded, staleMonthly, years)).toEqual([{ anchor: START, endedAt: switchedAt }]);
    // a renewal starts where the year ends, and a year's own period where it starts: neither ends it
    expect(annualYearLeft(deps, annual, later({ periodStart: END, periodEnd: END + 365 * DAY }), years)).toEqual([]);
    expect(annualYearLeft(deps, annual, later({}), years)).toEqual([]);
    // a subscription whose state the account does not know (an ended one, RT9-1) still ends its own years
    expect(annualYearLeft(deps, undefined, staleMonthly, years)).toEqual([{ anchor: START, endedAt: switchedAt }]);
    expect(annualYearLeft(deps, undefined, later({ status: "canceled" }), years)).toEqual([{ anchor: START, endedAt: START + 100 * DAY }]);
    expect(annualYearLeft(deps, undefined, later({ status: "canceled", id: "sub_9" }), years)).toEqual([]);
    // another subscription's periods say nothing about this year (RT8-1, RT8-2: a promoted or a current one)
    const other = { ...staleMonthly, id: "sub_2" };
    expect(annualYearLeft(deps, { ...recorded, id: "sub_2" }, other, years)).toEqual([]);
  });
});
