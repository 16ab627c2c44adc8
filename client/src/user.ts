import { type ConnectionOptions, connect, unwrap } from "./http.js";
import type { components } from "./generated/openapi.js";

type Schemas = components["schemas"];
export type Balance = Schemas["GetCreditsResponse"];
/** what the user's plan includes: the models it may call, those it lacks (with the plan that has them), its limits */
export type Entitlements = Balance["entitlements"];
export type HistoryPage = Schemas["GetCreditHistoryResponse"];
export type HistoryEntry = HistoryPage["entries"][number];
export type SubscribeRequest = Schemas["SubscribeRequest"];
export type CheckoutRequest = Schemas["CheckoutRequest"];
export type ChangePlanRequest = Schemas["ChangePlanRequest"];

/**
 * The signed-in user's API (a user JWT): balances, history, and billing. None of these calls is
 * retried: they are cheap to repeat by hand, and the billing ones start payments.
 */
export function createUserClient(options: ConnectionOptions) {
  const { client, attempt } = connect(options);
  const history = (page: { limit?: number; cursor?: string } = {}) =>
    unwrap(client.GET("/v1/credits/history", { params: { query: page }, ...attempt() }));
  return {
    /** balances, plan, subscription, and the plan's entitlements */
    credits: () => unwrap(client.GET("/v1/credits", attempt())),
    /** one page of ledger entries, newest first; pass `nextCursor` back as `cursor` for the next */
    history,
    /** every page, newest first: `for await (const page of user.historyPages({ limit: 100 }))` */
    async *historyPages(options: { limit?: number } = {}): AsyncGenerator<HistoryPage> {
      let cursor: string | undefined;
      do {
        const page = await history({ ...options, ...(cursor ? { cursor } : {}) });
        yield page;
        cursor = page.nextCursor ?? undefined;
      } while (cursor);
    },
    /** a Stripe Checkout URL for a paid plan (default pro, monthly) */
    subscribe: (body: SubscribeRequest = {}) => unwrap(client.POST("/v1/billing/subscribe", { body, ...attempt() })),
    /** a Stripe Checkout URL for a credit pack */
    checkout: (body: CheckoutRequest) => unwrap(client.POST("/v1/billing/checkout", { body, ...attempt() })),
    /** a Stripe billing portal URL */
    portal: () => unwrap(client.POST("/v1/billing/portal", attempt())),
    /** upgrade now (prorated, credits added) or downgrade at renewal */
    changePlan: (body: ChangePlanRequest) => unwrap(client.POST("/v1/billing/change-plan", { body, ...attempt() })),
    /** cancel at the end of the paid period */
    cancel: () => unwrap(client.POST("/v1/billing/cancel", attempt())),
  };
}

export type UserClient = ReturnType<typeof createUserClient>;
