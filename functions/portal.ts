import { requireUser, type UserPrincipal } from "../lib/auth.js";
import { cancelSubscription, changePlan, openPortal } from "../lib/billing/index.js";
import { type BillingAppDeps, billingAppDeps } from "../lib/billing/runtime.js";
import { changePlanBody, emptyBody } from "../lib/billing/schemas.js";
import { parseBody } from "../lib/http/input.js";
import { type RouteAction, router } from "../lib/http/router.js";
import { httpHandler, type Route } from "../lib/http/stack.js";

/**
 * Managing an existing billing relationship: the Stripe portal, plan changes and cancellation.
 * They live together because all three act on the subscription/customer a user already has
 * (subscribe.ts starts new purchases), need the same deps and share one IAM/timeout profile.
 */
const routes: Record<string, RouteAction<BillingAppDeps, UserPrincipal>> = {
  "POST /v1/billing/portal": (event, deps, user) => {
    parseBody(emptyBody, event);
    return openPortal(deps.billing, user.userId);
  },
  "POST /v1/billing/change-plan": (event, deps, user) => changePlan(deps.billing, { userId: user.userId, ...parseBody(changePlanBody, event) }),
  "POST /v1/billing/cancel": (event, deps, user) => {
    parseBody(emptyBody, event);
    return cancelSubscription(deps.billing, user.userId);
  },
};

export const route: Route<BillingAppDeps> = router(routes, requireUser);

// Cold start: bad config throws here, naming the variable; missing Stripe keys answer 503 per request.
export const handler = httpHandler(route, billingAppDeps());
