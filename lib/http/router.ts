import type { Authenticator, Principal } from "../auth.js";
import { NotFoundError } from "../errors.js";
import { parseQuery } from "./input.js";
import { type HttpEvent, json } from "./response.js";
import { noQuery } from "./schemas.js";
import type { Route } from "./stack.js";

export type RouteAction<D, P> = (event: HttpEvent, deps: D, principal: P) => Promise<unknown>;

/**
 * A function's routes, dispatched on `event.routeKey` in the contract's order of checks: unknown
 * route (404), then the caller (401/403, via `admit`), then the query (routes that take none
 * refuse any, 400), then the action, whose result is the JSON body.
 */
export function router<D extends { auth: Authenticator }, P>(
  routes: Record<string, RouteAction<D, P>>,
  admit: (principal: Principal) => P,
  options: { queryFree?: boolean } = { queryFree: true },
): Route<D> {
  const table = new Map(Object.entries(routes));
  return async (event, deps) => {
    const action = table.get(event.routeKey);
    if (!action) throw new NotFoundError(`No route ${event.routeKey.slice(0, 100)}`);
    const principal = admit(await deps.auth.authenticate(event.headers?.authorization));
    if (options.queryFree) parseQuery(noQuery, event);
    return json(await action(event, deps, principal));
  };
}
