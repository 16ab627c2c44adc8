import { requireUser, type UserPrincipal } from "../lib/auth.js";
import { openPortal } from "../lib/billing/index.js";
import { type BillingAppDeps, billingAppDeps } from "../lib/billing/runtime.js";
import { emptyBody } from "../lib/billing/schemas.js";
import { parseBody } from "../lib/http/input.js";
import type { PortalResponse } from "../lib/http/responses.js";
import { type RouteAction, router } from "../lib/http/router.js";
import { httpHandler, type Route } from "../lib/http/stack.js";

/**
 * The Stripe billing portal: reads the user's customer and asks Stripe for a portal session. It
 * writes nothing (the function has read-only table access); everything that changes what a user
 * pays (checkouts, plan changes, cancellation) lives in subscribe.ts.
 */
const routes: Record<string, RouteAction<BillingAppDeps, UserPrincipal>> = {
  "POST /v1/billing/portal": (event, deps, user): Promise<PortalResponse> => {
    parseBody(emptyBody, event);
    return openPortal(deps.billing, user.userId);
  },
};

export const route: Route<BillingAppDeps> = router(routes, requireUser);

// Cold start: bad config throws here, naming the variable; missing Stripe keys answer 503 per request.
export const handler = httpHandler(route, billingAppDeps());
