import { describe, expect, inject, it } from "vitest";
import { getBalance } from "../../lib/ledger/index.js";
import { runOps } from "../../infra/ops/cli.js";
import { customerOf, invoicePaid, STRIPE_TEST_KEY, TEST_PRICES, useBillingFixture } from "../helpers/billing.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { stripeEvent, uniqueStripeId } from "../helpers/stripe-events.js";

captureLogs();
const fx = useBillingFixture();

const NEW_PRICE = "price_pro_monthly_v2";

async function ops(argv: string[], extra: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const env = {
    TABLE_NAME: fx.tableName,
    DYNAMODB_ENDPOINT: inject("dynamoEndpoint"),
    STRIPE_SECRET_KEY: STRIPE_TEST_KEY,
    STRIPE_API_BASE: fx.stripe.url,
    ...TEST_PRICES,
    ...extra,
  };
  const code = await runOps(argv, env, { out: (line) => out.push(line), err: (line) => err.push(line) });
  return { code, out, err };
}

describe("npm run ops -- events", () => {
  it("lists, shows, replays (once, after the price is configured) and dismisses parked events", async () => {
    const userId = uniqueUser("ops-events");
    const customer = await customerOf(fx, userId);
    const paid = invoicePaid({ invoiceId: uniqueStripeId("in"), customer, subscriptionId: uniqueStripeId("sub"), userId, price: NEW_PRICE });
    expect((await fx.deliver(paid)).json.outcome).toBe("parked_unknown_price");
    const packless = stripeEvent("checkout.session.completed.payment", {
      object: { id: uniqueStripeId("cs_test"), customer, client_reference_id: userId, payment_intent: uniqueStripeId("pi"), metadata: { userId } },
    });
    delete packless.data.object.metadata.pack;
    expect((await fx.deliver(packless)).json.outcome).toBe("parked_unknown_pack");

    const listed = await ops(["events", "list"]);
    expect(listed.code).toBe(0);
    expect(listed.out.find((line) => line.startsWith(paid.id))).toMatch(/invoice\.paid\s+unknown_price\s+parked .*attempts 1/);
    expect((await ops(["events", "list", "--reason", "unknown_pack"])).out.filter((line) => line.startsWith("evt_"))).toHaveLength(1);
    const shown = await ops(["events", "show", paid.id]);
    expect(JSON.parse(shown.out.join("\n"))).toMatchObject({ eventId: paid.id, reason: "unknown_price", payload: { id: paid.id, type: "invoice.paid" } });

    // the configuration is not fixed yet: still parked, exit 1
    const early = await ops(["events", "replay", paid.id]);
    expect(early).toMatchObject({ code: 1 });
    expect(early.out[0]).toBe(`${paid.id} still parked: unknown_price`);
    // configured (the same environment the webhook gets): resolved, then nothing more
    const fixed = { STRIPE_PRICE_PRO_MONTHLY: NEW_PRICE };
    const replayed = await ops(["events", "replay", "--all", "--reason", "unknown_price"], fixed);
    expect(replayed.code).toBe(0);
    expect(replayed.out).toContain(`${paid.id} resolved: allowance_granted`);
    expect((await ops(["events", "replay", paid.id], fixed)).out[0]).toBe(`${paid.id} not parked (resolved): nothing done`);
    expect((await getBalance(fx.deps.ledger, userId)).balance).toBe(10_000 + 100_000);

    expect((await ops(["events", "dismiss", packless.id])).code).toBe(2); // the reason is required
    expect((await ops(["events", "dismiss", packless.id, "--reason", "test purchase, refunded"])).code).toBe(0);
    expect((await ops(["events", "list"])).out.some((line) => line.startsWith(packless.id))).toBe(false);
    expect((await ops(["events", "list", "--all"])).out.find((line) => line.startsWith(packless.id))).toMatch(/dismissed/);
    expect((await ops(["events", "dismiss", packless.id, "--reason", "again"])).code).toBe(1);
  });
});
