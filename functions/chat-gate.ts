import { requireService, type ServicePrincipal } from "../lib/auth.js";
import { parseBody } from "../lib/http/input.js";
import type { AuthorizeResponse, HoldOutcomeResponse } from "../lib/http/responses.js";
import { authorizeBody, releaseBody, settleBody } from "../lib/http/schemas.js";
import { type RouteAction, router } from "../lib/http/router.js";
import { httpHandler, type Route } from "../lib/http/stack.js";
import { authorizeChat, releaseHold, settleChat } from "../lib/ledger/index.js";
import { type AppDeps, appDeps } from "../lib/runtime.js";

/**
 * The chat backend's gate: service tokens (scope `gate`) only; end users must never price calls.
 * Each result is typed with its response schema (lib/http/responses.ts, the OpenAPI document's
 * source): a result that lacks or mistypes a documented field does not compile.
 */
const routes: Record<string, RouteAction<AppDeps, ServicePrincipal>> = {
  "POST /v1/gate/authorize": (event, deps): Promise<AuthorizeResponse> => authorizeChat(deps.ledger, parseBody(authorizeBody, event)),
  "POST /v1/gate/settle": (event, deps): Promise<HoldOutcomeResponse> => settleChat(deps.ledger, parseBody(settleBody, event)),
  "POST /v1/gate/release": (event, deps): Promise<HoldOutcomeResponse> => releaseHold(deps.ledger, parseBody(releaseBody, event)),
};

export const route: Route<AppDeps> = router(routes, requireService);

// Cold start: bad config throws here, naming the variable, before any request is taken.
export const handler = httpHandler(route, appDeps());
