import { describe, expect, it } from "vitest";
import { auditAccount } from "../../lib/ledger/index.js";
import type { AccountCommit } from "../../lib/ledger/store.js";
import { yearOf } from "../../lib/ledger/paid-year.js";
import { subscribeAndPay, T0, useBillingFixture } from "../helpers/billing.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, subscriptionObject } from "../helpers/stripe-events.js";
import { annualToMonthly, balanceOf, months, monthStart, PRO, type Sub, YEAR } from "../helpers/annual.js";

/**
 * Red team round 6 (commit 169fdfd), RT6-3: a year's end that undoes nothing is lost to a
 * concurrent month grant. `endAnnualYear` (lib/ledger/year-end.ts) writes the end (`paidYears`
 * with `endedAfter`) in a commit of no entries when no month after the end was granted yet — and a
 * commit of no entries does not move the account's `seq` (lib/ledger/dynamo-ledger-store.ts:
 * `seq = expectedSeq + entries.length`). A sweep (or lazy authorize) that read the account before
 * the end and commits after it is therefore not stale: it grants the month after the end and
 * writes its own copy of `paidYears`, without `endedAfter`. The month stays, the end is gone (a
 * later payment of the year settles months past it), and the webhook has its receipt: Stripe
 * will not redeliver. The plan change that follows (also no entries) does not stop it either
 * (to monthly it leaves `periodIndex` alone; to free its 30-day index is still below the month).
 *
 * Deterministic interleaving: the sweep's month-2 grant has read the account and is about to
 * commit when the year-ending event (delivered just after the month boundary) is applied in full.
 *
 * Sequence: pro annual (100,000 a month) from 1 January; month 1 granted; on 28 February 20:00 the
 * subscription is canceled at once (variant b: switched to pro monthly in the portal, its invoice
 * 100,000, whose invoice.paid is delivered after the race: with it inside the race its entry moves
 * `seq` and the sweep's commit is stale); Stripe delivers the event on 1 March 13:00, while the
 * sweep is granting month 2.
 *  - the event applied before the sweep read the account: 10,000 + 2 × 100,000 = 210,000
 *    (b: + 100,000 = 310,000), the year ended after month 1.
 *  - interleaved: month 2 granted from the ended year and kept; observed 310,000 (b: 410,000),
 *    and the year shows no end.
 * Expected by arithmetic: the same as delivered before the sweep, and `endedAfter` = 1.
 */
captureLogs();
const fx = useBillingFixture();

const ENDED_AT = monthStart(2) - 16 * 3_600; // 28 February 20:00 UTC: month 1
const DELIVERED_AT = monthStart(2) + 3_600; // 1 March 13:00: the sweep's run
const MONTH_2_KEY = `allowance#${new Date(monthStart(2) * 1000).toISOString()}`;

async function run(kind: "cancel" | "switch", interleaved: boolean) {
  const sub: Sub = await subscribeAndPay(fx, { plan: "pro", interval: "year", amountPaid: 120_000 });
  expect(await months(fx, sub.userId, 1, 1)).toEqual([PRO]);
  const canceled = subscriptionObject({
    id: sub.subscriptionId,
    customer: sub.customer,
    price: "price_pro_yearly",
    userId: sub.userId,
    status: "canceled",
    periodStart: T0,
    periodEnd: T0 + YEAR,
  });
  const sw = annualToMonthly(sub, ENDED_AT, 100_000);
  const deliverEnd = async () => {
    if (kind === "cancel") {
      fx.stripe.subscriptions.set(sub.subscriptionId, canceled);
      expect((await fx.deliver(stripeEvent("customer.subscription.deleted", { created: ENDED_AT, object: canceled }))).status).toBe(200);
    } else {
      // the subscription update only: the switch's invoice.paid is a separate event (delivered below)
      fx.stripe.subscriptions.set(sub.subscriptionId, sw.switched);
      expect((await fx.deliver(sw.updated)).status).toBe(200);
    }
  };
  const store = fx.deps.ledger.store;
  const commit = store.commit;
  let injected = false;
  if (interleaved) {
    // the sweep has read the account and built month 2's commit; the webhook runs to completion first
    store.commit = async (c: AccountCommit) => {
      if (!injected && c.entries.some((entry) => entry.key === MONTH_2_KEY)) {
        injected = true;
        await deliverEnd();
      }
      return commit(c);
    };
  } else {
    fx.clock.value = DELIVERED_AT * 1000;
    await deliverEnd();
  }
  try {
    await months(fx, sub.userId, 2, 2); // the sweep, 1 March 13:00
  } finally {
    store.commit = commit;
  }
  if (interleaved) expect(injected).toBe(true);
  if (kind === "switch") expect((await fx.deliver(sw.paid)).json.outcome).toBe("allowance_granted");
  const account = await fx.deps.ledger.store.getAccount(sub.userId);
  expect(account).toMatchObject(kind === "cancel" ? { plan: "free" } : { plan: "pro", interval: "month" });
  expect((await auditAccount(fx.deps.ledger, sub.userId)).problems).toEqual([]);
  return { balance: await balanceOf(fx, sub.userId), endedAfter: yearOf(account?.paidYears, T0 * 1000)?.endedAfter };
}

describe("red team 6: a year's end applied while the sweep grants the month after it", () => {
  it("RT6-3a: an immediate cancellation: the month after the end is not granted, the end stays recorded", async () => {
    const onTime = await run("cancel", false);
    expect(onTime).toEqual({ balance: 10_000 + 2 * PRO, endedAfter: 1 });
    expect(await run("cancel", true)).toEqual(onTime); // observed: { balance: 310,000, endedAfter: undefined }
  });

  it("RT6-3b: a switch to monthly: the month after the end is not granted, the end stays recorded", async () => {
    const onTime = await run("switch", false);
    expect(onTime).toEqual({ balance: 10_000 + 2 * PRO + PRO, endedAfter: 1 });
    expect(await run("switch", true)).toEqual(onTime); // observed: { balance: 410,000, endedAfter: undefined }
  });
});
