/**
 * @creditgate/client: the creditgate HTTP API, typed from its OpenAPI document (openapi.json, through
 * openapi-typescript and openapi-fetch). createUserClient for the signed-in user's app,
 * createGateClient (authorize, settle, release, meter) for the chat backend, getPlans (no token)
 * for a pricing page.
 */
export { CreditgateError, InsufficientCreditsError, PlanRequiredError, SettleFailedError } from "./errors.js";
export {
  type Authorization,
  type AuthorizeRequest,
  createGateClient,
  type GateClient,
  type Hold,
  type HoldOutcome,
  type MeterRequest,
  type MeterResult,
  type Usage,
} from "./gate.js";
export type { ConnectionOptions, PublicConnectionOptions } from "./http.js";
export { getPlans, type Pack, type Plan, type PlanLimits, type Plans } from "./public.js";
export { isRetryable, type RetryOptions, withRetry } from "./retry.js";
export {
  type Balance,
  type ChangePlanRequest,
  type Entitlements,
  type CheckoutRequest,
  createUserClient,
  type HistoryEntry,
  type HistoryPage,
  type SubscribeRequest,
  type UserClient,
} from "./user.js";
export type { components, paths } from "./generated/openapi.js";
