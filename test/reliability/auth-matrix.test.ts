import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { routeTable } from "../../lib/routes.js";
import { type BillingFixture, billingFixture, subscribeAndPay } from "../helpers/billing.js";
import { type Answer, invoke } from "../helpers/events.js";
import { itemsOf, SONNET } from "../helpers/http.js";
import { uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { signatureFor, stripeEvent, uniqueStripeId } from "../helpers/stripe-events.js";
import { serviceToken, userToken } from "../helpers/tokens.js";
import { recordOutcomeOf, recordSection } from "./harness.js";

/**
 * Authorization matrix: every route × {no token, user A, user B, service, Stripe signature},
 * through the real functions. User A owns what the request names (the account a gate call is
 * for, the hold it settles); user B is any other signed-in user. Only the allowed cells succeed;
 * a refused cell writes nothing for anyone and calls no one; an allowed user cell acts on the
 * caller's own account only (the other user's items are unchanged).
 */
captureLogs();

type Caller = "none" | "userA" | "userB" | "service" | "stripe";
const CALLERS: Caller[] = ["none", "userA", "userB", "service", "stripe"];
const OK = 200;
const started = performance.now();

/** The expected answer of each cell (see SECURITY.md, "Who can do what": gate = service only, the rest = the user's own). */
const GATE = { none: 401, userA: 403, userB: 403, service: OK, stripe: 401 } as const;
const USER = { none: 401, userA: OK, userB: OK, service: 403, stripe: 401 } as const;
const MATRIX: Record<string, Record<Caller, number>> = {
  "POST /v1/gate/authorize": GATE,
  "POST /v1/gate/settle": GATE,
  "POST /v1/gate/release": GATE,
  "GET /v1/credits": USER,
  "GET /v1/credits/history": USER,
  "POST /v1/billing/subscribe": USER,
  "POST /v1/billing/checkout": USER,
  "POST /v1/billing/portal": USER,
  "POST /v1/billing/change-plan": USER,
  "POST /v1/billing/cancel": USER,
  "GET /v1/billing/auto-topup": USER,
  "PUT /v1/billing/auto-topup": USER,
  "POST /v1/billing/payment-method": USER,
  // Stripe authenticates with its signature over the body; no bearer token means anything there.
  "POST /v1/stripe/webhook": { none: 400, userA: 400, userB: 400, service: 400, stripe: OK },
  // the API's own description and the plans (pricing pages) are public (any token, or none, is ignored)
  "GET /v1/plans": { none: OK, userA: OK, userB: OK, service: OK, stripe: OK },
  "GET /v1/openapi.json": { none: OK, userA: OK, userB: OK, service: OK, stripe: OK },
};

let fx: BillingFixture;
// biome-ignore lint/suspicious/noExplicitAny: the imported function modules
let handlers: Record<string, (event: any, context: any) => Promise<any>>;
const owner = uniqueUser("matrix-a");
const other = uniqueUser("matrix-b");
/** each row's users, prepared so that each allowed cell can succeed */
const rowUsers = new Map<string, { a: string; b: string }>();
const holds: string[] = [];
const results: { route: string; caller: Caller; status: number; expected: number }[] = [];
let leaks = 0;

beforeAll(async () => {
  fx = await billingFixture();
  const [gate, credits] = await Promise.all([import("../../functions/chat-gate.js"), import("../../functions/credits.js")]);
  const byFunction = {
    chatGate: gate.handler,
    credits: credits.handler,
    subscribe: fx.fns.subscribe.handler,
    portal: fx.fns.portal.handler,
    webhook: fx.fns.webhook.handler,
  };
  handlers = Object.fromEntries([...routeTable()].map(([route, fn]) => [route, byFunction[fn as keyof typeof byFunction]]));
  const service = await serviceToken();
  // A's open holds: one to settle, one to release.
  for (const requestId of ["to-settle", "to-release"]) {
    const opened = await invoke(gate.handler, {
      routeKey: "POST /v1/gate/authorize",
      token: service,
      body: { userId: owner, requestId, model: SONNET, inputTokens: 100, maxOutputTokens: 100 },
    });
    holds.push(opened.json.holdId);
  }
  for (const route of Object.keys(MATRIX)) rowUsers.set(route, { a: owner, b: other });
  // Billing rows need accounts in the right state for their allowed cells: fresh ones for a first
  // checkout, a Stripe customer for the portal, a live subscription for change-plan and cancel.
  const pair = (label: string) => ({ a: uniqueUser(`${label}-a`), b: uniqueUser(`${label}-b`) });
  rowUsers.set("POST /v1/billing/subscribe", pair("sub"));
  rowUsers.set("POST /v1/billing/checkout", pair("pack"));
  const portal = pair("portal");
  for (const userId of [portal.a, portal.b]) {
    expect((await fx.asUser(fx.fns.subscribe.route, userId, "POST /v1/billing/checkout", { pack: "starter" })).status).toBe(OK);
  }
  rowUsers.set("POST /v1/billing/portal", portal);
  const subscribed = { a: (await subscribeAndPay(fx, { userId: uniqueUser("plan-a") })).userId, b: (await subscribeAndPay(fx, { userId: uniqueUser("plan-b") })).userId };
  rowUsers.set("POST /v1/billing/change-plan", subscribed);
  const cancelling = { a: (await subscribeAndPay(fx, { userId: uniqueUser("cancel-a") })).userId, b: (await subscribeAndPay(fx, { userId: uniqueUser("cancel-b") })).userId };
  rowUsers.set("POST /v1/billing/cancel", cancelling);
  rowUsers.set("POST /v1/stripe/webhook", pair("hook"));
  fx.stripe.reset();
});

/** The valid request of a row (for user A's resources), so that only the caller decides the outcome. */
function request(route: string, users: { a: string; b: string }): { body?: unknown; text?: string } {
  switch (route) {
    case "POST /v1/gate/authorize":
      return { body: { userId: users.a, requestId: "matrix", model: SONNET, inputTokens: 10, maxOutputTokens: 10 } };
    case "POST /v1/gate/settle":
      return { body: { holdId: holds[0], inputTokens: 100, outputTokens: 50 } };
    case "POST /v1/gate/release":
      return { body: { holdId: holds[1] } };
    case "POST /v1/billing/subscribe":
      return { body: { plan: "pro" } };
    case "POST /v1/billing/checkout":
      return { body: { pack: "starter" } };
    case "POST /v1/billing/change-plan":
      return { body: { plan: "plus" } };
    case "PUT /v1/billing/auto-topup":
      // turning it off needs no card: the allowed cells can succeed
      return { body: { enabled: false, threshold: 1_000, pack: "starter", monthlyLimit: 1 } };
    case "POST /v1/stripe/webhook":
      return {
        text: JSON.stringify(
          stripeEvent("checkout.session.completed.payment", {
            object: { id: uniqueStripeId("cs_test_pay"), customer: null, client_reference_id: users.a, payment_intent: uniqueStripeId("pi"), metadata: { userId: users.a, pack: "starter" } },
          }),
        ),
      };
    default:
      return {};
  }
}

async function credentials(caller: Caller, users: { a: string; b: string }, payload: string | undefined): Promise<{ token?: string; headers?: Record<string, string> }> {
  switch (caller) {
    case "none":
      return {};
    case "userA":
      return { token: await userToken(users.a) };
    case "userB":
      return { token: await userToken(users.b) };
    case "service":
      return { token: await serviceToken() };
    case "stripe":
      return { headers: { "stripe-signature": signatureFor(payload ?? "") } };
  }
}

const snapshot = async (users: { a: string; b: string }) => ({
  a: await itemsOf(fx.client, fx.tableName, users.a),
  b: await itemsOf(fx.client, fx.tableName, users.b),
  stripe: fx.stripe.requests.length,
});

recordOutcomeOf("auth-matrix");

describe("authorization matrix", () => {
  it("covers every route there is", () => {
    expect(Object.keys(MATRIX).sort()).toEqual([...routeTable().keys()].sort());
  });

  for (const [route, expected] of Object.entries(MATRIX)) {
    it(`${route}: ${CALLERS.map((caller) => `${caller} ${expected[caller]}`).join(", ")}`, async () => {
      const users = rowUsers.get(route) as { a: string; b: string };
      // Refused cells first: each must leave both users' items and Stripe untouched.
      const order = [...CALLERS].sort((x, y) => Number(expected[x] === OK) - Number(expected[y] === OK));
      for (const caller of order) {
        const { body, text } = request(route, users);
        const payload = text ?? (body === undefined ? undefined : JSON.stringify(body));
        const before = await snapshot(users);
        const answer: Answer = await invoke(handlers[route] as never, {
          routeKey: route,
          ...(payload === undefined ? {} : { body: payload }),
          ...(await credentials(caller, users, payload)),
        });
        results.push({ route, caller, status: answer.status, expected: expected[caller] });
        const after = await snapshot(users);
        expect(answer.status, `${route} as ${caller}: ${JSON.stringify(answer.json)}`).toBe(expected[caller]);
        if (expected[caller] !== OK) {
          expect(answer.json.error.code).toBe(expected[caller] === 401 ? "UNAUTHORIZED" : expected[caller] === 403 ? "FORBIDDEN" : "VALIDATION_FAILED");
          expect(after, `${route} as ${caller} wrote or called something`).toEqual(before);
          continue;
        }
        // An allowed user cell acts on the caller's own account: the other user is untouched.
        if (caller === "userA" && JSON.stringify(after.b) !== JSON.stringify(before.b)) leaks++;
        if (caller === "userB" && JSON.stringify(after.a) !== JSON.stringify(before.a)) leaks++;
        if (caller === "userA") expect(after.b).toEqual(before.b);
        if (caller === "userB") expect(after.a).toEqual(before.a);
        if (route === "GET /v1/credits") expect(answer.json.userId).toBe(caller === "userA" ? users.a : users.b);
        if (route === "GET /v1/credits/history" && caller === "userB") {
          expect(answer.json.entries.every((entry: { key: string }) => entry.key === "signup")).toBe(true);
        }
      }
    });
  }
});

afterAll(() => {
  const unexpected = results.filter((cell) => cell.status !== cell.expected).length;
  const allowed = results.filter((cell) => cell.expected === OK).length;
  recordSection({
    section: "auth-matrix",
    order: 5,
    wallMs: Math.round(performance.now() - started),
    counts: { cells: results.length, allowed, refused: results.length - allowed, unexpected, leaks },
    rows: [
      {
        check: "Authorization matrix (real functions)",
        volume: `${results.length} cells: ${Object.keys(MATRIX).length} routes × {no token, user A, user B, service, Stripe signature}; ${allowed} allowed, ${results.length - allowed} refused`,
        drift: 0,
        creditsLost: 0,
        doubleGrants: 0,
        other: unexpected + leaks,
        otherLabel: "cells answering otherwise, writes by refused cells or to the other user",
      },
    ],
  });
});
