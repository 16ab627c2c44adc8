import { requireUser, type UserPrincipal } from "../lib/auth.js";
import { startPackCheckout, startSubscriptionCheckout } from "../lib/billing/index.js";
import { type BillingAppDeps, billingAppDeps } from "../lib/billing/runtime.js";
import { packCheckoutBody, subscribeBody } from "../lib/billing/schemas.js";
import { parseBody } from "../lib/http/input.js";
import { type RouteAction, router } from "../lib/http/router.js";
import { httpHandler, type Route } from "../lib/http/stack.js";

/** Starting a purchase: a subscription or a credit pack, each through Stripe Checkout. */
const routes: Record<string, RouteAction<BillingAppDeps, UserPrincipal>> = {
  "POST /v1/billing/subscribe": (event, deps, user) =>
    startSubscriptionCheckout(deps.billing, { userId: user.userId, email: user.email, ...parseBody(subscribeBody, event) }),
  "POST /v1/billing/checkout": (event, deps, user) =>
    startPackCheckout(deps.billing, { userId: user.userId, email: user.email, ...parseBody(packCheckoutBody, event) }),
};

export const route: Route<BillingAppDeps> = router(routes, requireUser);

// Cold start: bad config throws here, naming the variable; missing Stripe keys answer 503 per request.
export const handler = httpHandler(route, billingAppDeps());
