import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CreditgateError,
  createGateClient,
  createUserClient,
  type GateClient,
  InsufficientCreditsError,
} from "../../client/src/index.js";
import { findFreePort } from "../../infra/local/dynamodb-local.js";
import { STRIPE_TEST_KEY, TEST_PRICE_AMOUNTS, TEST_PRICES } from "../helpers/billing.js";
import { checkedFetch, startFaultProxy, startLocalStack, stopLocalStack, until } from "../helpers/e2e.js";
import { SONNET } from "../helpers/ledger.js";
import { WEBHOOK_SECRET } from "../helpers/stripe-events.js";
import { startStripeServer, type StripeTestServer } from "../helpers/stripe-server.js";
import { serviceToken, TEST_SECRET, userToken } from "../helpers/tokens.js";

/**
 * @creditgate/client against `npm start`'s stack (infra/local/start.ts, DynamoDB Local in memory,
 * Stripe pointed at the loopback test server), over 127.0.0.1. Every answer the client receives is
 * checked against the OpenAPI document (checkedFetch). The gate client goes through a proxy that
 * can drop an answer after the server applied the request.
 */
describe("@creditgate/client against the local stack", () => {
  let base: string;
  let stack: ReturnType<typeof startLocalStack>;
  let stripe: StripeTestServer;
  let proxy: Awaited<ReturnType<typeof startFaultProxy>>;
  let gate: GateClient;
  const user = (userId: string) => createUserClient({ baseUrl: base, token: () => userToken(userId), fetch: checkedFetch });
  const newUser = () => `client-${randomUUID()}`;
  const usage = { inputTokens: 1_000, outputTokens: 300 };
  const call = (userId: string) => ({ userId, model: SONNET, inputTokens: 1_000, maxOutputTokens: 800 });
  /** the entries a user's history holds for a reason, every page read through the client's iterator */
  const entriesOf = async (userId: string, reason: string) => {
    const entries = [];
    for await (const page of user(userId).historyPages({ limit: 100 })) entries.push(...page.entries);
    return entries.filter((entry) => entry.reason === reason);
  };

  beforeAll(async () => {
    stripe = await startStripeServer({ unitAmounts: TEST_PRICE_AMOUNTS });
    const port = await findFreePort();
    stack = startLocalStack({
      PORT: String(port),
      DYNAMODB_LOCAL_PORT: String(await findFreePort()),
      AUTH_JWT_SECRET: TEST_SECRET,
      STRIPE_SECRET_KEY: STRIPE_TEST_KEY,
      STRIPE_API_BASE: stripe.url,
      STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
      ...TEST_PRICES,
      SWEEP_INTERVAL_SECONDS: "3600",
    });
    await until(() => stack.output().includes("Ctrl-C stops everything.") || stack.child.exitCode !== null, "the start banner");
    base = `http://127.0.0.1:${port}`;
    proxy = await startFaultProxy(base);
    gate = createGateClient({
      baseUrl: proxy.url,
      token: () => serviceToken(),
      fetch: checkedFetch,
      retry: { attempts: 4, baseDelayMs: 20 },
    });
  }, 120_000);

  afterAll(async () => {
    await proxy?.close();
    await stopLocalStack(stack.child);
    await stripe?.close();
  }, 30_000);

  describe("the user API", () => {
    it("credits, history pages, subscribe, checkout, portal, change-plan, cancel", async () => {
      const userId = newUser();
      const client = user(userId);
      expect(await client.credits()).toMatchObject({ userId, plan: "free", balance: 10_000, held: 0 });

      for (let i = 0; i < 3; i++) await gate.meter(call(userId), async () => usage);
      const pages = [];
      for await (const page of client.historyPages({ limit: 2 })) pages.push(page);
      // signup + 3 settles, newest first, two to a page
      expect(pages.map((page) => page.entries.map((entry) => entry.reason))).toEqual([["settle", "settle"], ["settle", "signup"]]);
      expect(pages.at(-1)?.nextCursor).toBeNull();
      expect((await client.history({ limit: 1 })).entries).toHaveLength(1);

      expect((await client.subscribe({ plan: "pro", interval: "month" })).checkoutUrl).toMatch(/^https:\/\//);
      // the subscription checkout made the user a Stripe customer: the portal opens
      expect((await client.portal()).portalUrl).toMatch(/^https:\/\//);
      const packBuyer = user(newUser());
      expect((await packBuyer.checkout({ pack: "starter" })).checkoutUrl).toMatch(/^https:\/\//);
      // no paid subscription yet: change-plan is refused with the contract's error, typed
      const refusal = await client.changePlan({ plan: "plus" }).catch((error: unknown) => error);
      expect(refusal).toBeInstanceOf(CreditgateError);
      expect(refusal).toMatchObject({ status: 409, code: "CONFLICT", details: { reason: "NO_SUBSCRIPTION" } });
      expect(await packBuyer.cancel()).toMatchObject({ status: "already_free", effectiveAt: null });
      // a billing portal without a customer: 409 NO_BILLING_ACCOUNT
      await expect(user(newUser()).portal()).rejects.toMatchObject({ status: 409, code: "NO_BILLING_ACCOUNT" });
    });
  });

  describe("the gate API", () => {
    it("authorize (idempotent by requestId), settle, release — each answering its first outcome again", async () => {
      const userId = newUser();
      const request = { ...call(userId), requestId: "chat-1" };
      const hold = await gate.authorize(request);
      expect(await gate.authorize(request)).toEqual(hold);
      const settled = await gate.settle({ holdId: hold.holdId, ...usage });
      expect(settled).toMatchObject({ holdId: hold.holdId, status: "settled", balance: 10_000 - settled.charged });
      expect(await gate.release({ holdId: hold.holdId })).toEqual(settled);

      const second = await gate.authorize({ ...call(userId), requestId: "chat-2" });
      expect(await gate.release({ holdId: second.holdId })).toMatchObject({ status: "released", charged: 0, released: second.reserved });
    });

    it("never retries a 4xx other than a retryable 409: an unknown hold is one request, thrown as NOT_FOUND", async () => {
      const before = proxy.requests.length;
      await expect(gate.settle({ holdId: "hold_nope", ...usage })).rejects.toMatchObject({ status: 404, code: "NOT_FOUND" });
      expect(proxy.requests.length - before).toBe(1);
    });
  });

  describe("meter()", () => {
    it("authorizes with a generated requestId, runs the call, settles with the usage it returns", async () => {
      const userId = newUser();
      let seen: { held: number; reserved: number } | undefined;
      const metered = await gate.meter(call(userId), async (hold) => {
        seen = { held: (await user(userId).credits()).held, reserved: hold.reserved };
        return { ...usage, reply: "hello" };
      });
      expect(metered.hold.requestId).toMatch(/^[0-9a-f-]{36}$/);
      expect(seen?.held).toBe(seen?.reserved);
      expect(metered.result.reply).toBe("hello");
      expect(metered.settlement).toMatchObject({ status: "settled", holdId: metered.hold.holdId });
      expect(await user(userId).credits()).toMatchObject({ balance: 10_000 - metered.settlement.charged, held: 0 });
    });

    it("releases the hold and rethrows when the call throws", async () => {
      const userId = newUser();
      const failure = new Error("the model timed out");
      let holdId = "";
      await expect(
        gate.meter(call(userId), async (hold) => {
          holdId = hold.holdId;
          throw failure;
        }),
      ).rejects.toBe(failure);
      expect(await gate.release({ holdId })).toMatchObject({ status: "released", charged: 0 });
      expect(await user(userId).credits()).toMatchObject({ balance: 10_000, available: 10_000, held: 0 });
      expect(await entriesOf(userId, "settle")).toEqual([]);
    });

    it("throws InsufficientCreditsError (required, balance, available) on 402, without calling the model", async () => {
      const userId = newUser();
      let called = false;
      const refusal = await gate
        .meter({ userId, model: SONNET, inputTokens: 2_000_000, maxOutputTokens: 900_000 }, async () => {
          called = true;
          return usage;
        })
        .catch((error: unknown) => error);
      expect(refusal).toBeInstanceOf(InsufficientCreditsError);
      const insufficient = refusal as InsufficientCreditsError;
      expect(insufficient).toMatchObject({ status: 402, code: "INSUFFICIENT_CREDITS", balance: 10_000, available: 10_000 });
      expect(insufficient.required).toBeGreaterThan(10_000);
      expect(called).toBe(false);
    });
  });

  describe("a lost answer (the server applied the request, the client never heard)", () => {
    it("on authorize: the retry reuses the requestId; one hold, one charge", async () => {
      const userId = newUser();
      const before = proxy.requests.length;
      proxy.dropNextAnswer("/v1/gate/authorize");
      let heldDuringCall = -1;
      const metered = await gate.meter(call(userId), async () => {
        heldDuringCall = (await user(userId).credits()).held;
        return usage;
      });
      const authorizes = proxy.requests.slice(before).filter((request) => request.path === "/v1/gate/authorize");
      expect(authorizes.map((request) => request.dropped)).toEqual([true, false]);
      expect(authorizes[1]?.body).toBe(authorizes[0]?.body);
      expect(JSON.parse(authorizes[0]?.body as string).requestId).toBe(metered.hold.requestId);
      // exactly one hold while the model ran, exactly one charge after
      expect(heldDuringCall).toBe(metered.hold.reserved);
      const settles = await entriesOf(userId, "settle");
      expect(settles.map((entry) => entry.amount)).toEqual([-metered.settlement.charged]);
      expect(await user(userId).credits()).toMatchObject({ balance: 10_000 - metered.settlement.charged, held: 0 });
    });

    it("on settle: the retry reuses the holdId; one charge", async () => {
      const userId = newUser();
      const before = proxy.requests.length;
      proxy.dropNextAnswer("/v1/gate/settle");
      const metered = await gate.meter(call(userId), async () => usage);
      const settleRequests = proxy.requests.slice(before).filter((request) => request.path === "/v1/gate/settle");
      expect(settleRequests.map((request) => request.dropped)).toEqual([true, false]);
      expect(settleRequests[1]?.body).toBe(settleRequests[0]?.body);
      expect(JSON.parse(settleRequests[0]?.body as string).holdId).toBe(metered.hold.holdId);
      expect(metered.settlement.status).toBe("settled");
      const settles = await entriesOf(userId, "settle");
      expect(settles.map((entry) => entry.amount)).toEqual([-metered.settlement.charged]);
      expect(await user(userId).credits()).toMatchObject({ balance: 10_000 - metered.settlement.charged, held: 0 });
    });
  });
});
