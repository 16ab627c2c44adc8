import { connect, type PublicConnectionOptions, unwrap } from "./http.js";
import type { components } from "./generated/openapi.js";

type Schemas = components["schemas"];
export type Plans = Schemas["GetPlansResponse"];
export type Plan = Plans["plans"][number];
export type Pack = Plans["packs"][number];
export type PlanLimits = Plan["limits"];

/**
 * GET /v1/plans, for a pricing page: the plans in rank order (intervals sold, monthly allowance,
 * the models each may call, its limits) and the credit packs. Public: no token is sent. No prices:
 * they live in Stripe. Not retried, like the user client's calls.
 */
export function getPlans(options: PublicConnectionOptions): Promise<Plans> {
  const { client, attempt } = connect(options);
  return unwrap(client.GET("/v1/plans", attempt()));
}
