import { describe, expect, it } from "vitest";
import { invoke } from "../helpers/events.js";
import { routeCaller, useAppFixture, useFunctions } from "../helpers/http.js";
import { OPUS, SONNET, uniqueUser } from "../helpers/ledger.js";
import { captureLogs } from "../helpers/logs.js";
import { checkResponse } from "../helpers/openapi.js";
import { serviceToken, userToken } from "../helpers/tokens.js";

/**
 * GET /v1/plans (issue 23): the catalog's public view for pricing pages, served by the credits
 * function before it asks for a token. Through fx.call every answer is checked against the
 * OpenAPI document; the real function (cold-started from its environment) is checked by hand.
 */
captureLogs();
const fx = useAppFixture();
const fns = useFunctions(fx);

const PLANS = "GET /v1/plans";
const SMALL_MODELS = [SONNET, "openai/gpt-5.2", "google/gemini-3-pro-preview", "mistralai/mistral-large-2512"];
const ALL_MODELS = [...SMALL_MODELS, OPUS];
const PACKS = [
  { id: "starter", credits: 50_000 },
  { id: "pro", credits: 200_000 },
  { id: "enterprise", credits: 1_000_000 },
];

describe("GET /v1/plans", () => {
  it("answers without a token, cacheable: the plans in rank order with their models and limits (rate limits on: capped at 600), and the packs", async () => {
    // the real function, its environment's defaults: AUTHORIZE_RATE_LIMIT_PER_MINUTE 600, 64 open holds
    const res = await invoke(fns.credits.handler, { routeKey: PLANS });
    checkResponse(PLANS, { status: res.status, headers: res.headers, body: res.json });
    expect(res.status).toBe(200);
    expect(res.headers["cache-control"]).toBe("public, max-age=300");
    expect(res.json).toEqual({
      plans: [
        {
          id: "free",
          rank: 0,
          paid: false,
          intervals: [],
          monthlyAllowance: 10_000,
          models: SMALL_MODELS,
          limits: { authorizePerMinute: 60, largestReservation: 20_000, maxOpenHolds: 64 },
        },
        {
          id: "plus",
          rank: 1,
          paid: true,
          intervals: ["month", "year"],
          monthlyAllowance: 40_000,
          models: ALL_MODELS,
          limits: { authorizePerMinute: 300, largestReservation: 100_000, maxOpenHolds: 64 },
        },
        {
          id: "pro",
          rank: 2,
          paid: true,
          intervals: ["month", "year"],
          monthlyAllowance: 100_000,
          models: ALL_MODELS,
          limits: { authorizePerMinute: 600, largestReservation: 200_000, maxOpenHolds: 64 },
        },
      ],
      packs: PACKS,
    });
    // no Stripe amounts anywhere: prices live in Stripe
    expect(JSON.stringify(res.json)).not.toMatch(/amount|price|currency|cents/i);
  });

  it("shows opus under plus and pro only: the plan a free user is sent to by PLAN_REQUIRED", async () => {
    const res = await fx.call(fns.credits.route, { routeKey: PLANS });
    const including = res.json.plans.filter((plan: { models: string[] }) => plan.models.includes(OPUS)).map((plan: { id: string }) => plan.id);
    expect(including).toEqual(["plus", "pro"]);
  });

  it("ignores any token: none, a user's, the service's or a malformed one all get the same answer", async () => {
    const anonymous = await fx.call(fns.credits.route, { routeKey: PLANS });
    expect(anonymous.status).toBe(200);
    for (const token of [await userToken(uniqueUser("plans")), await serviceToken(), "not-a-jwt"]) {
      const res = await fx.call(fns.credits.route, { routeKey: PLANS, token });
      expect(res.status).toBe(200);
      expect(res.json).toEqual(anonymous.json);
    }
  });

  it.each([[{ plan: "pro" }, "plan"], [{ userId: "someone" }, "userId"]])("refuses the query %o with 400 naming %s", async (query, field) => {
    const res = await fx.call(fns.credits.route, { routeKey: PLANS, query });
    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({ code: "VALIDATION_FAILED", field });
  });

  it("shows the limits as authorize enforces them: the operator's caps over every plan, null per minute when rate limits are off", async () => {
    // the fixture's ledger: rate limits off (0), 64 open holds
    const off = await fx.call(fns.credits.route, { routeKey: PLANS });
    expect(off.json.plans.map((plan: { limits: unknown }) => plan.limits)).toEqual([
      { authorizePerMinute: null, largestReservation: 20_000, maxOpenHolds: 64 },
      { authorizePerMinute: null, largestReservation: 100_000, maxOpenHolds: 64 },
      { authorizePerMinute: null, largestReservation: 200_000, maxOpenHolds: 64 },
    ]);
    // an operator capping at 100 a minute and 10 open holds: below plus's and pro's own, above free's rate
    const capped = routeCaller({ ...fx.deps, ledger: { ...fx.deps.ledger, authorizeRateLimitPerMinute: 100, maxOpenHolds: 10 } });
    const res = await capped(fns.credits.route, { routeKey: PLANS });
    expect(res.json.plans.map((plan: { limits: unknown }) => plan.limits)).toEqual([
      { authorizePerMinute: 60, largestReservation: 20_000, maxOpenHolds: 10 },
      { authorizePerMinute: 100, largestReservation: 100_000, maxOpenHolds: 10 },
      { authorizePerMinute: 100, largestReservation: 200_000, maxOpenHolds: 10 },
    ]);
  });

  it("reads no account: a request writes and reads nothing in the table", async () => {
    fx.requests.reset();
    const res = await fx.call(fns.credits.route, { routeKey: PLANS, token: await userToken(uniqueUser("plans-noread")) });
    expect(res.status).toBe(200);
    expect(Object.fromEntries(fx.requests.counts)).toEqual({});
  });
});
