import { requireUser, type UserPrincipal } from "../lib/auth.js";
import { parseQuery } from "../lib/http/input.js";
import { historyQuery, noQuery } from "../lib/http/schemas.js";
import { type RouteAction, router } from "../lib/http/router.js";
import { httpHandler, type Route } from "../lib/http/stack.js";
import { listHistory, peekBalance } from "../lib/ledger/index.js";
import { type AppDeps, appDeps } from "../lib/runtime.js";

/** The signed-in user's own account: the user id comes from the token, never from the request. */
const routes: Record<string, RouteAction<AppDeps, UserPrincipal>> = {
  "GET /v1/credits": (event, deps, user) => {
    parseQuery(noQuery, event);
    // Read-only (the function has no write access): a new user sees the account they will get.
    return peekBalance(deps.ledger, user.userId);
  },
  "GET /v1/credits/history": (event, deps, user) => listHistory(deps.ledger, { userId: user.userId, ...parseQuery(historyQuery, event) }),
};

export const route: Route<AppDeps> = router(routes, requireUser, { queryFree: false });

// Cold start: bad config throws here, naming the variable, before any request is taken.
export const handler = httpHandler(route, appDeps());
