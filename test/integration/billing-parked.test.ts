import { describe, expect, it } from "vitest";
import { type BillingDeps, createPriceBook, dismissParkedEvent, replayParkedEvent, replayParkedEvents } from "../../lib/billing/index.js";
import { catalog } from "../../lib/catalog.js";
import { auditAccount, getBalance } from "../../lib/ledger/index.js";
import { customerOf, invoicePaid, TEST_PRICES, useBillingFixture } from "../helpers/billing.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, uniqueStripeId } from "../helpers/stripe-events.js";

/**
 * An event of a handled type that cannot be applied now is parked, never receipted and lost:
 * each case the red team found (a price not configured yet, a pack session without its pack, a
 * customer not mapped yet) parks with its reason, logs at ERROR, counts ParkedStripeEvents, and
 * grants exactly once when replayed after the cause went away (twice, concurrently, or racing
 * Stripe's redelivery).
 */
const logs = captureLogs();
const fx = useBillingFixture();

const balance = async (userId: string) => (await getBalance(fx.deps.ledger, userId)).balance;
const NEW_PRICE = "price_plus_monthly_2027";

/** Billing deps whose price book also knows `NEW_PRICE` as plus/month: the configuration fixed, stack restarted. */
const fixedDeps = (): BillingDeps => ({
  ...fx.billing,
  prices: createPriceBook({ ...TEST_PRICES, STRIPE_PRICE_PLUS_MONTHLY: NEW_PRICE }, catalog),
});

/**
 * A paid pack checkout whose session names no pack (no metadata.pack), of a user with a Stripe
 * customer; Stripe lists the session's line items at `linePrices` (unknown to Stripe without them).
 */
async function packSessionNamingNoPack(label: string, linePrices?: string[]) {
  const userId = uniqueUser(label);
  const customer = await customerOf(fx, userId);
  const sessionId = uniqueStripeId("cs_test");
  if (linePrices) fx.stripe.sessionPrices.set(sessionId, linePrices);
  const event = stripeEvent("checkout.session.completed.payment", {
    object: { id: sessionId, customer, client_reference_id: userId, payment_intent: uniqueStripeId("pi"), metadata: { userId } },
  });
  delete event.data.object.metadata.pack;
  return { userId, sessionId, event };
}

const parkedMetrics = () =>
  logs
    .lines()
    .filter((line) => JSON.stringify((line._aws as { CloudWatchMetrics?: unknown })?.CloudWatchMetrics ?? []).includes('"ParkedStripeEvents"'))
    .map((line) => ({ reason: line.reason, count: line.ParkedStripeEvents }));

describe("parked Stripe events", () => {
  // Regression (red team): invoice.paid for a price not (yet) configured answered 200
  // `ignored_unknown_price` with a receipt: the user paid and kept the signup credits for good.
  it("a paid invoice for a price not configured yet is parked, then granted exactly once after the fix", async () => {
    const userId = uniqueUser("park-price");
    const customer = await customerOf(fx, userId);
    const event = invoicePaid({ invoiceId: uniqueStripeId("in"), customer, subscriptionId: uniqueStripeId("sub"), userId, price: NEW_PRICE });
    const first = await fx.deliver(event);
    expect(first.status).toBe(200);
    expect(first.json.outcome).toBe("parked_unknown_price");
    expect(await fx.billing.store.getReceipt(event.id)).toBeUndefined();
    expect(logs.lines()).toContainEqual(
      expect.objectContaining({ level: "ERROR", message: "stripe event parked: it cannot be applied now", eventId: event.id, type: "invoice.paid", reason: "unknown_price" }),
    );
    expect(parkedMetrics()).toEqual(expect.arrayContaining([{ reason: "unknown_price", count: 1 }, { reason: undefined, count: 1 }]));
    // Stripe's redelivery is tried again, never answered `duplicate`
    expect((await fx.deliver(event)).json.outcome).toBe("parked_unknown_price");
    expect(await fx.billing.store.getParkedEvent(event.id)).toMatchObject({ status: "parked", reason: "unknown_price", attempts: 2, customer });
    expect(await balance(userId)).toBe(10_000);

    // replaying with the old configuration changes nothing but the attempts
    expect(await replayParkedEvent(fx.billing, event.id)).toEqual({ eventId: event.id, result: "still_parked", reason: "unknown_price" });
    // the price configured: the replay grants it
    const deps = fixedDeps();
    expect(await replayParkedEvent(deps, event.id)).toEqual({ eventId: event.id, result: "resolved", outcome: "allowance_granted" });
    expect(await balance(userId)).toBe(10_000 + 40_000);
    expect(await fx.billing.store.getParkedEvent(event.id)).toMatchObject({ status: "resolved", outcome: "allowance_granted" });
    // a second replay, and Stripe's redelivery, change nothing more
    expect(await replayParkedEvent(deps, event.id)).toEqual({ eventId: event.id, result: "not_parked", status: "resolved" });
    expect((await fx.deliver(event)).json.outcome).toBe("duplicate");
    expect(await balance(userId)).toBe(50_000);
    expect((await auditAccount(fx.deps.ledger, userId)).ok).toBe(true);
  });

  it("concurrent replays of one parked event grant it once", async () => {
    const userId = uniqueUser("park-race");
    const customer = await customerOf(fx, userId);
    const event = invoicePaid({ invoiceId: uniqueStripeId("in"), customer, subscriptionId: uniqueStripeId("sub"), userId, price: NEW_PRICE });
    expect((await fx.deliver(event)).json.outcome).toBe("parked_unknown_price");
    const deps = fixedDeps();
    const replays = await Promise.all([replayParkedEvent(deps, event.id), replayParkedEvent(deps, event.id), replayParkedEvent(deps, event.id)]);
    expect(replays.filter((replay) => replay.result === "resolved")).not.toHaveLength(0);
    expect(replays.filter((replay) => replay.result === "still_parked")).toHaveLength(0);
    expect(await balance(userId)).toBe(10_000 + 40_000);
    // resolved by whichever replay ended it first: the one that granted, or one that found it granted
    expect((await fx.billing.store.getParkedEvent(event.id))?.status).toBe("resolved");
    expect(["allowance_granted", "allowance_already_granted"]).toContain((await fx.billing.store.getParkedEvent(event.id))?.outcome);
    expect((await fx.deliver(event)).json.outcome).toBe("duplicate");
    expect(await balance(userId)).toBe(50_000);
    expect((await auditAccount(fx.deps.ledger, userId)).ok).toBe(true);
  });

  // Regression (red team): an invoice.paid whose customer was not mapped yet was receipted and lost.
  it("an event of a customer not mapped yet is replayed by itself when the checkout completion maps the customer", async () => {
    const userId = uniqueUser("park-customer");
    const customer = uniqueStripeId("cus");
    const subscriptionId = uniqueStripeId("sub");
    const paid = invoicePaid({ invoiceId: uniqueStripeId("in"), customer, subscriptionId, userId: "", price: TEST_PRICES.STRIPE_PRICE_PRO_MONTHLY });
    expect((await fx.deliver(paid)).json.outcome).toBe("parked_unknown_customer");
    const completed = stripeEvent("checkout.session.completed.payment", {
      object: { id: uniqueStripeId("cs_test"), customer, client_reference_id: userId, payment_status: "unpaid", metadata: { userId, pack: "starter" } },
    });
    expect((await fx.deliver(completed)).status).toBe(200);
    expect(await fx.billing.store.getParkedEvent(paid.id)).toMatchObject({ status: "resolved", outcome: "allowance_granted" });
    expect(await balance(userId)).toBe(10_000 + 100_000);
    expect((await fx.deliver(paid)).json.outcome).toBe("duplicate");
    expect(await balance(userId)).toBe(110_000);
  });

  it("a paid pack session naming no pack is granted the pack its line item's price is configured for, once", async () => {
    const { userId, sessionId, event } = await packSessionNamingNoPack("pack-line", ["price_pack_pro"]);
    expect((await fx.deliver(event)).json.outcome).toBe("pack_granted");
    expect((await fx.deliver({ ...event, id: uniqueStripeId("evt") })).json.outcome).toBe("pack_already_granted");
    expect(await balance(userId)).toBe(10_000 + 200_000);
    expect(fx.stripe.requestsTo(`/v1/checkout/sessions/${sessionId}/line_items`, "GET").length).toBe(2);
  });

  it("a pack session whose line item is no configured pack price is parked, and applies once the price is configured", async () => {
    const { userId, event } = await packSessionNamingNoPack("pack-later", ["price_pack_starter_v2"]);
    expect((await fx.deliver(event)).json.outcome).toBe("parked_unknown_pack");
    // the operator configures the new price (STRIPE_PRICE_PACK_STARTER) and replays
    const configured = { ...fx.billing, prices: createPriceBook({ ...TEST_PRICES, STRIPE_PRICE_PACK_STARTER: "price_pack_starter_v2" }, catalog) };
    expect(await replayParkedEvent(configured, event.id)).toEqual({ eventId: event.id, result: "resolved", outcome: "pack_granted" });
    expect(await replayParkedEvent(configured, event.id)).toMatchObject({ result: "not_parked", status: "resolved" });
    expect(await balance(userId)).toBe(10_000 + 50_000);
  });

  // Regression (red team): a paid pack session without metadata.pack was receipted as ignored.
  it("a paid pack session naming no pack (and unknown to Stripe) is parked; an operator dismisses it, and it is kept as dismissed", async () => {
    const { userId, event } = await packSessionNamingNoPack("park-pack");
    expect((await fx.deliver(event)).json.outcome).toBe("parked_unknown_pack");
    expect(await dismissParkedEvent(fx.billing, event.id, "refunded by hand in the dashboard")).toBe(true);
    expect(await fx.billing.store.getParkedEvent(event.id)).toMatchObject({ status: "dismissed", dismissReason: "refunded by hand in the dashboard" });
    expect(await dismissParkedEvent(fx.billing, event.id, "again")).toBe(false);
    expect((await replayParkedEvents(fx.billing)).some((replay) => replay.eventId === event.id)).toBe(false);
    expect(await balance(userId)).toBe(10_000);
  });
});
