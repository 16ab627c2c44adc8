import { readdirSync, readFileSync } from "node:fs";
import Stripe from "stripe";
import { describe, expect, it } from "vitest";
import { clawFactKey, createPriceBook, PINNED_API_VERSION, priceBookFromConfig } from "../../lib/billing/index.js";
import { subscribeBody } from "../../lib/billing/schemas.js";
import {
  chargeSchema,
  checkoutSessionSchema,
  closedDisputeSchema,
  disputeSchema,
  invoiceSchema,
  refundSchema,
  subscriptionLines,
  subscriptionSchema,
  userIdFrom,
} from "../../lib/billing/stripe-objects.js";
import { snapshotOf } from "../../lib/billing/subscription.js";
import { catalog } from "../../lib/catalog.js";
import { loadConfig } from "../../lib/config.js";
import { TEST_PRICES } from "../helpers/billing.js";
import { type FixtureName, loadFixture } from "../helpers/stripe-events.js";
import { parseForm } from "../helpers/stripe-server.js";

const prices = createPriceBook(TEST_PRICES, catalog);

describe("price book (config only)", () => {
  it("maps plans and packs to configured prices and back", () => {
    expect(prices.planPrice("pro", "month")).toBe("price_pro_monthly");
    expect(prices.planPrice("plus", "year")).toBe("price_plus_yearly");
    expect(prices.planOfPrice("price_plus_yearly")).toEqual({ plan: "plus", interval: "year" });
    expect(prices.packPrice("enterprise")).toBe("price_pack_enterprise");
    expect(prices.packOfPrice("price_pack_pro")).toBe("pro");
    expect(prices.planOfPrice("price_pack_pro")).toBeUndefined();
    expect(prices.planPrice("free", "month")).toBeUndefined();
  });

  it("names the variable of a missing price", () => {
    const partial = createPriceBook({ STRIPE_PRICE_PRO_MONTHLY: "price_a" }, catalog);
    expect(partial.planPrice("pro", "year")).toBeUndefined();
    expect(partial.planPriceVar("pro", "year")).toBe("STRIPE_PRICE_PRO_YEARLY");
    expect(partial.packPriceVar("starter")).toBe("STRIPE_PRICE_PACK_STARTER");
  });

  it("is built from the validated config", () => {
    const cfg = loadConfig({
      TABLE_NAME: "table-1",
      AUTH_JWT_SECRET: "x".repeat(32),
      APP_URL: "https://app.example.com",
      STRIPE_PRICE_PRO_MONTHLY: "price_from_env",
    });
    expect(priceBookFromConfig(cfg, catalog).planOfPrice("price_from_env")).toEqual({ plan: "pro", interval: "month" });
  });
});

describe("fixtures follow the SDK's pinned API version", () => {
  const names = readdirSync(new URL("../fixtures/stripe/", import.meta.url))
    .filter((file) => file.endsWith(".json") && file !== "fixtures3.json") // Stripe's resources, not an event
    .map((file) => file.replace(/\.json$/, "") as FixtureName);

  it.each(names)("%s is an event of API version %s", (name) => {
    const event = loadFixture(name);
    expect(event.object).toBe("event");
    expect(event.api_version).toBe(Stripe.API_VERSION);
    expect(PINNED_API_VERSION).toBe(Stripe.API_VERSION);
  });

  it("subscriptions carry their periods on the items, which billing reads", () => {
    const subscription = loadFixture("customer.subscription.updated").data.object;
    expect(subscription.current_period_start).toBeUndefined();
    const snapshot = snapshotOf(subscriptionSchema.parse(subscription), { prices });
    expect(snapshot).toMatchObject({
      id: "sub_fixture",
      priceId: "price_pro_monthly",
      itemId: "si_fixture",
      periodStart: subscription.items.data[0].current_period_start * 1000,
      periodEnd: subscription.items.data[0].current_period_end * 1000,
    });
  });

  it("invoices name their subscription under parent and their prices under pricing", () => {
    const invoice = loadFixture("invoice.paid").data.object;
    expect(invoice.subscription).toBeNull(); // Stripe's object still carries the field, always null
    const parsed = invoiceSchema.parse(invoice);
    expect(parsed.parent?.subscription_details?.subscription).toBe("sub_fixture");
    expect(subscriptionLines(parsed).map((line) => line.price)).toEqual(["price_pro_monthly"]);
    const proration = structuredClone(invoice);
    proration.lines.data[0].parent.subscription_item_details.proration = true;
    expect(subscriptionLines(invoiceSchema.parse(proration))).toEqual([]);
  });

  it("sessions, charges and disputes parse", () => {
    expect(checkoutSessionSchema.parse(loadFixture("checkout.session.completed.payment").data.object)).toMatchObject({
      mode: "payment",
      payment_intent: "pi_fixture_pack",
      metadata: { pack: "starter" },
    });
    expect(chargeSchema.parse(loadFixture("charge.refunded").data.object)).toMatchObject({ amount_refunded: 1000 });
    expect(disputeSchema.parse(loadFixture("charge.dispute.created").data.object)).toMatchObject({ charge: "ch_fixture" });
  });

  it("refunds and closed disputes parse from Stripe's own objects (test/fixtures/stripe/NOTICE.md)", () => {
    const objectOf = (name: string) => JSON.parse(readFileSync(new URL(`../fixtures/stripe/${name}.json`, import.meta.url), "utf8")).data.object;
    for (const name of ["refund.failed", "charge.refund.updated"]) {
      expect(refundSchema.parse(objectOf(name))).toMatchObject({ id: "re_fixture", status: "failed", charge: "ch_fixture", payment_intent: "pi_fixture_pack", created: 1767268800 });
    }
    expect(closedDisputeSchema.parse(objectOf("charge.dispute.closed"))).toMatchObject({ id: "dp_fixture", status: "won", amount: 1000 });
    // a refund of a charge without a payment intent parses (and is ignored by the handler)
    expect(refundSchema.parse({ ...objectOf("refund.failed"), payment_intent: null }).payment_intent).toBeNull();
  });
});

describe("small rules", () => {
  it("claw keys come from the business fact", () => {
    expect(clawFactKey({ kind: "refund", chargeId: "ch_1", paymentIntentId: "pi_1", chargeAmount: 100, refundedCents: 40 })).toBe(
      "refund#ch_1#40",
    );
    expect(clawFactKey({ kind: "dispute", chargeId: "ch_1", paymentIntentId: "pi_1", disputeId: "dp_9", disputedCents: 100 })).toBe(
      "dispute#dp_9",
    );
  });

  it("metadata user ids are used only when they are valid user ids", () => {
    expect(userIdFrom(undefined, "", "bad id with spaces", "user-1")).toBe("user-1");
    expect(userIdFrom(null)).toBeUndefined();
  });

  it("subscribe bodies default to pro monthly and refuse free or extra fields", () => {
    expect(subscribeBody.parse(undefined)).toEqual({});
    expect(subscribeBody.safeParse({ plan: "free" }).success).toBe(false);
    expect(subscribeBody.safeParse({ price: "price_x" }).success).toBe(false);
  });

  it("the test server parses the SDK's form encoding", () => {
    expect(parseForm("mode=payment&line_items%5B0%5D%5Bprice%5D=price_1&line_items%5B0%5D%5Bquantity%5D=1&metadata%5BuserId%5D=u1")).toEqual({
      mode: "payment",
      line_items: [{ price: "price_1", quantity: "1" }],
      metadata: { userId: "u1" },
    });
  });
});
