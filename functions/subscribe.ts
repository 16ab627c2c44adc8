import { requireUser, type UserPrincipal } from "../lib/auth.js";
import { startPackCheckout, startSubscriptionCheckout } from "../lib/billing/index.js";
import { type BillingAppDeps, billingAppDeps } from "../lib/billing/runtime.js";
import { packCheckoutBody, subscribeBody } from "../lib/billing/schemas.js";
import { NotFoundError } from "../lib/errors.js";
import { parseBody, parseQuery } from "../lib/http/input.js";
import { type HttpEvent, json } from "../lib/http/response.js";
import { noQuery } from "../lib/http/schemas.js";
import { httpHandler, type Route } from "../lib/http/stack.js";

/** Starting a purchase: a subscription or a credit pack, each through Stripe Checkout. */
const routes = new Map<string, (event: HttpEvent, deps: BillingAppDeps, user: UserPrincipal) => Promise<unknown>>([
  [
    "POST /v1/billing/subscribe",
    (event, deps, user) =>
      startSubscriptionCheckout(deps.billing, { userId: user.userId, email: user.email, ...parseBody(subscribeBody, event) }),
  ],
  [
    "POST /v1/billing/checkout",
    (event, deps, user) =>
      startPackCheckout(deps.billing, { userId: user.userId, email: user.email, ...parseBody(packCheckoutBody, event) }),
  ],
]);

export const route: Route<BillingAppDeps> = async (event, deps) => {
  const run = routes.get(event.routeKey);
  if (!run) throw new NotFoundError(`No route ${event.routeKey.slice(0, 100)}`);
  const user = requireUser(await deps.auth.authenticate(event.headers?.authorization));
  parseQuery(noQuery, event);
  return json(await run(event, deps, user));
};

// Cold start: bad config throws here, naming the variable; missing Stripe keys answer 503 per request.
export const handler = httpHandler(route, billingAppDeps());
