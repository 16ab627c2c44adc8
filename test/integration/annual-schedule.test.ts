import { describe, expect, it } from "vitest";
import {
  auditAccount,
  authorizeChat,
  changePlanSchedule,
  getBalance,
  grantAllowanceIfDue,
  listHistory,
} from "../../lib/ledger/index.js";
import { periodStart } from "../../lib/periods.js";
import { type LedgerFixture, payAnnualYear, SONNET, uniqueUser, useLedgerFixture } from "../helpers/ledger.js";

const MONTHLY = { kind: "calendarMonth" } as const;

/** An annual plus user whose paid year starts at `anchor`, with month 0 paid by the invoice. */
async function annualUser(fx: LedgerFixture, anchor: number) {
  const userId = uniqueUser("annual");
  fx.clock.value = anchor;
  await payAnnualYear(fx.deps, { userId, plan: "plus", anchor });
  return userId;
}

const allowanceKeys = async (fx: LedgerFixture, userId: string) =>
  (await listHistory(fx.deps, { userId, limit: 100 })).entries.filter((entry) => entry.reason === "allowance");

describe("an annual plan changed mid-year keeps its schedule's place", () => {
  const fx = useLedgerFixture();

  // Regression (red team): plus/year → pro/year after month 1 was granted re-anchored the schedule
  // at month 0, so month 1 was due again under a key that existed; every authorize spun ~5 s and
  // answered 409 CONFLICT with 150,000 credits available, until the next month.
  it("after month 1 was granted, a change to pro admits at once and month 2 is granted once, at what was paid", async () => {
    const anchor = Date.UTC(2026, 0, 15, 10);
    const userId = await annualUser(fx, anchor);
    fx.clock.value = periodStart(anchor, 1, MONTHLY) + 3_600_000;
    expect(await grantAllowanceIfDue(fx.deps, userId)).toMatchObject({ granted: true, applied: true });

    await changePlanSchedule(fx.deps, { userId, plan: "pro", interval: "year", periodStart: anchor });
    fx.requests.reset();
    const hold = await authorizeChat(fx.deps, { userId, requestId: "after-change", model: SONNET, inputTokens: 100, maxOutputTokens: 100 });
    expect(fx.requests.total()).toBe(1); // admitted by the first write: nothing was due
    expect(hold.balance).toBe(10_000 + 40_000 + 40_000);

    fx.clock.value = periodStart(anchor, 2, MONTHLY) + 60_000;
    await authorizeChat(fx.deps, { userId, requestId: "month-2", model: SONNET, inputTokens: 100, maxOutputTokens: 100 });
    const grants = await allowanceKeys(fx, userId);
    // no upgrade payment is recorded here (billing's top-up and share are not modelled): month 2
    // grants what the year paid for it, plus's allowance (lib/ledger/paid-year.ts)
    expect(grants.map((entry) => entry.amount)).toEqual([40_000, 40_000]);
    expect(new Set(grants.map((entry) => entry.key)).size).toBe(2);
    expect((await getBalance(fx.deps, userId)).balance).toBe(10_000 + 40_000 + 40_000 + 40_000);
    expect((await auditAccount(fx.deps, userId)).ok).toBe(true);
  });

  it("a schedule left due on a period granted before is repaired by the next authorize, granting nothing twice", async () => {
    const anchor = Date.UTC(2026, 2, 3, 8);
    const userId = await annualUser(fx, anchor);
    fx.clock.value = periodStart(anchor, 1, MONTHLY) + 60_000;
    await grantAllowanceIfDue(fx.deps, userId);
    // What the old plan change wrote: back to month 0, month 1 due again.
    const account = await fx.deps.store.getAccount(userId);
    if (!account) throw new Error("no account");
    const reset = await fx.deps.store.commit({
      userId,
      expectedSeq: account.seq,
      entries: [],
      balanceDelta: 0,
      availableDelta: 0,
      set: { periodIndex: 0, nextGrantAt: periodStart(anchor, 1, MONTHLY) },
    });
    expect(reset.kind).toBe("committed");

    const hold = await authorizeChat(fx.deps, { userId, requestId: "stuck", model: SONNET, inputTokens: 100, maxOutputTokens: 100 });
    expect(hold.balance).toBe(10_000 + 40_000 + 40_000);
    const repaired = await fx.deps.store.getAccount(userId);
    expect(repaired).toMatchObject({ periodIndex: 1, nextGrantAt: periodStart(anchor, 2, MONTHLY) });
    expect(await allowanceKeys(fx, userId)).toHaveLength(1);
    expect((await auditAccount(fx.deps, userId)).ok).toBe(true);
  });

  it("a new annual period (renewal) does re-anchor at month 0", async () => {
    const anchor = Date.UTC(2026, 4, 1);
    const userId = await annualUser(fx, anchor);
    const renewal = Date.UTC(2027, 4, 1);
    fx.clock.value = renewal;
    await changePlanSchedule(fx.deps, { userId, plan: "plus", interval: "year", periodStart: renewal });
    expect(await fx.deps.store.getAccount(userId)).toMatchObject({
      periodAnchor: renewal,
      periodIndex: 0,
      nextGrantAt: periodStart(renewal, 1, MONTHLY),
    });
  });
});
