import { describe, expect, it } from "vitest";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { applySwitch, balanceOf, creditedDowngrade, DAY, months, monthStart, PLUS, PRO, prorationSwitch, YEAR } from "../helpers/annual.js";

/**
 * Red team round 2 (commit 234fb48): a portal downgrade that Stripe prorates (the unused
 * difference credited back to the customer) takes no credits for the rest of the period it gave
 * money back for (monthly: "downgrade_nothing_to_record"; annual: only months after the one in
 * progress), while the portal upgrade back tops up that same rest again. Down and up again in
 * the portal, repeatedly: the money nets to ~0 per round, each round adds a top-up.
 */
captureLogs();
const fx = useBillingFixture();

const cents = (price: number, at: number, start: number, end: number) => Math.round((price * (end - at)) / (end - start));
/** The independent rule: the plus → pro allowance difference (60,000) for the time left of the allowance period, floored. */
const difference = (at: number, start: number, end: number) => Math.floor((60_000 * (end - at)) / (end - start));

describe("red team 2: portal down/up cycles", () => {
  it("RT2-2a: monthly pro, three portal downgrade+upgrade rounds in one period: the credits follow the money (100,000 for one paid pro month)", async () => {
    const periodEnd = T0 + 31 * DAY;
    const sub = await subscribeAndPay(fx, { plan: "pro", interval: "month", amountPaid: 4_900, periodEnd });
    const start = await balanceOf(fx, sub.userId); // the free allowance (10,000) + the pro month (100,000)
    let netCents = 4_900;
    let owed = 0; // credits the rounds' money stands for: each credited downgrade takes the difference back, each upgrade gives it
    for (let round = 0; round < 3; round++) {
      const down = T0 + 10 * DAY + round * 7_200;
      const downCredit = cents(4_900, down, T0, periodEnd);
      const downCharge = cents(1_900, down, T0, periodEnd);
      const d = prorationSwitch(sub, { at: down, price: "price_plus_monthly", periodEnd, oldPrice: "price_pro_monthly", credit: downCredit, fullPrice: downCharge, amountPaid: 0 });
      expect(await applySwitch(fx, sub, d, down)).toBe("downgrade_credit_recorded");
      netCents -= downCredit - downCharge; // to the customer balance
      owed -= difference(down, T0, periodEnd);
      const up = down + 3_600;
      const upCharge = cents(4_900, up, T0, periodEnd);
      const upCredit = cents(1_900, up, T0, periodEnd);
      const u = prorationSwitch(sub, { at: up, price: "price_pro_monthly", periodEnd, oldPrice: "price_plus_monthly", credit: upCredit, fullPrice: upCharge });
      expect(await applySwitch(fx, sub, u, up)).toBe("upgrade_topped_up");
      netCents += upCharge - upCredit;
      owed += difference(up, T0, periodEnd);
    }
    // the user paid 4,900 cents net (+/- a cent or two of rounding) for one pro month
    expect(netCents).toBeLessThanOrEqual(4_900); // no more than the one pro month (the rounds even return a few cents)
    expect(await fx.deps.ledger.store.getAccount(sub.userId)).toMatchObject({ plan: "pro", interval: "month" });
    // one pro month: 100,000 credits, less the difference for the hours spent on plus (money came back for them)
    expect(owed).toBeLessThanOrEqual(0);
    expect((await balanceOf(fx, sub.userId)) - start).toBe(owed); // on 234fb48: 100,000 + 3 top-ups of ~40,600 = ~221,900
  });

  it("RT2-2b: annual pro, three portal downgrade+upgrade rounds in month 3: the year's credits follow the money", async () => {
    const yearEnd = T0 + YEAR;
    const sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 49_000 });
    expect(await months(fx, sub.userId, 1, 3, T0)).toEqual([PRO, PRO, PRO]);
    const start = await balanceOf(fx, sub.userId);
    let netCents = 0;
    let owed = 0;
    for (let round = 0; round < 3; round++) {
      const down = monthStart(3) + 15 * DAY + round * 7_200;
      const d = creditedDowngrade(sub, down, { credit: cents(49_000, down, T0, yearEnd), fullPrice: cents(19_000, down, T0, yearEnd) });
      expect(await applySwitch(fx, sub, d, down)).toBe("downgrade_credit_recorded");
      netCents -= cents(49_000, down, T0, yearEnd) - cents(19_000, down, T0, yearEnd);
      owed -= difference(down, monthStart(3), monthStart(4)); // April, the allowance month in progress
      const up = down + 3_600;
      const u = prorationSwitch(sub, { at: up, price: "price_pro_yearly", oldPrice: "price_plus_yearly", credit: cents(19_000, up, T0, yearEnd), fullPrice: cents(49_000, up, T0, yearEnd) });
      expect(await applySwitch(fx, sub, u, up)).toBe("upgrade_topped_up");
      netCents += cents(49_000, up, T0, yearEnd) - cents(19_000, up, T0, yearEnd);
      owed += difference(up, monthStart(3), monthStart(4));
    }
    expect(netCents).toBeLessThanOrEqual(0); // the rounds cost the user nothing (a few cents back)
    const rest = await months(fx, sub.userId, 4, 11, T0);
    expect(rest).toEqual(Array(8).fill(PRO)); // still pro, paid once
    // the year was paid once, at pro: nothing more than 8 x PRO after month 3
    expect(owed).toBeLessThanOrEqual(0);
    expect((await balanceOf(fx, sub.userId)) - start).toBe(8 * PRO + owed); // on 234fb48: + 3 top-ups of ~32,000 for half of April
    void PLUS;
  });
});
