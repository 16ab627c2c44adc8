import { requireUser, type UserPrincipal } from "../lib/auth.js";
import { cancelSubscription, changePlan, openPortal } from "../lib/billing/index.js";
import { type BillingAppDeps, billingAppDeps } from "../lib/billing/runtime.js";
import { changePlanBody, emptyBody } from "../lib/billing/schemas.js";
import { NotFoundError } from "../lib/errors.js";
import { parseBody, parseQuery } from "../lib/http/input.js";
import { type HttpEvent, json } from "../lib/http/response.js";
import { noQuery } from "../lib/http/schemas.js";
import { httpHandler, type Route } from "../lib/http/stack.js";

/**
 * Managing an existing billing relationship: the Stripe portal, plan changes and cancellation.
 * They live together because all three act on the subscription/customer a user already has
 * (subscribe.ts starts new purchases), need the same deps and share one IAM/timeout profile.
 */
const routes = new Map<string, (event: HttpEvent, deps: BillingAppDeps, user: UserPrincipal) => Promise<unknown>>([
  [
    "POST /v1/billing/portal",
    (event, deps, user) => {
      parseBody(emptyBody, event);
      return openPortal(deps.billing, user.userId);
    },
  ],
  [
    "POST /v1/billing/change-plan",
    (event, deps, user) => changePlan(deps.billing, { userId: user.userId, ...parseBody(changePlanBody, event) }),
  ],
  [
    "POST /v1/billing/cancel",
    (event, deps, user) => {
      parseBody(emptyBody, event);
      return cancelSubscription(deps.billing, user.userId);
    },
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
