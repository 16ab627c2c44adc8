import { requireUser, type UserPrincipal } from "../lib/auth.js";
import { parseQuery } from "../lib/http/input.js";
import type { BalanceResponse, HistoryResponse } from "../lib/http/responses.js";
import { historyQuery, noQuery } from "../lib/http/schemas.js";
import { type RouteAction, router } from "../lib/http/router.js";
import { httpHandler, type Route } from "../lib/http/stack.js";
import { listHistory, peekBalance } from "../lib/ledger/index.js";
import { OPENAPI_ROUTE, PLANS_ROUTE } from "../lib/openapi/operations.js";
import { openApiResponse } from "../lib/openapi/serve.js";
import { plansResponse } from "../lib/plans-view.js";
import { type AppDeps, appDeps } from "../lib/runtime.js";

/** The signed-in user's own account: the user id comes from the token, never from the request. */
const routes: Record<string, RouteAction<AppDeps, UserPrincipal>> = {
  "GET /v1/credits": (event, deps, user): Promise<BalanceResponse> => {
    parseQuery(noQuery, event);
    // Read-only (the function has no write access): a new user sees the account they will get.
    return peekBalance(deps.ledger, user.userId);
  },
  "GET /v1/credits/history": (event, deps, user): Promise<HistoryResponse> =>
    listHistory(deps.ledger, { userId: user.userId, ...parseQuery(historyQuery, event) }),
};

const userRoute = router(routes, requireUser, { queryFree: false });

/** The OpenAPI document and the plans are public: they are answered before the user routes ask for a token. */
export const route: Route<AppDeps> = async (event, deps) => {
  if (event.routeKey === OPENAPI_ROUTE) return openApiResponse(event);
  if (event.routeKey === PLANS_ROUTE) return plansResponse(event, deps.ledger);
  return userRoute(event, deps);
};

// Cold start: bad config throws here, naming the variable, before any request is taken.
export const handler = httpHandler(route, appDeps());
