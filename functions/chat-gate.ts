import { requireService } from "../lib/auth.js";
import { NotFoundError } from "../lib/errors.js";
import { parseBody, parseQuery } from "../lib/http/input.js";
import { type HttpEvent, json } from "../lib/http/response.js";
import { noQuery, authorizeBody, releaseBody, settleBody } from "../lib/http/schemas.js";
import { httpHandler, type Route } from "../lib/http/stack.js";
import { authorizeChat, releaseHold, settleChat } from "../lib/ledger/index.js";
import { type AppDeps, appDeps } from "../lib/runtime.js";

/** The chat backend's gate: service tokens (scope `gate`) only; end users must never price calls. */
const routes = new Map<string, (event: HttpEvent, deps: AppDeps) => Promise<unknown>>([
  ["POST /v1/gate/authorize", (event, deps) => authorizeChat(deps.ledger, parseBody(authorizeBody, event))],
  ["POST /v1/gate/settle", (event, deps) => settleChat(deps.ledger, parseBody(settleBody, event))],
  ["POST /v1/gate/release", (event, deps) => releaseHold(deps.ledger, parseBody(releaseBody, event))],
]);

export const route: Route<AppDeps> = async (event, deps) => {
  const run = routes.get(event.routeKey);
  if (!run) throw new NotFoundError(`No route ${event.routeKey.slice(0, 100)}`);
  requireService(await deps.auth.authenticate(event.headers?.authorization));
  parseQuery(noQuery, event);
  return json(await run(event, deps));
};

// Cold start: bad config throws here, naming the variable, before any request is taken.
export const handler = httpHandler(route, appDeps());
