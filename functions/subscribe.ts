import { requireUser, type UserPrincipal } from "../lib/auth.js";
import { cancelSubscription, changePlan, startPackCheckout, startSubscriptionCheckout } from "../lib/billing/index.js";
import { type BillingAppDeps, billingAppDeps } from "../lib/billing/runtime.js";
import { autoTopUpBody, changePlanBody, emptyBody, packCheckoutBody, subscribeBody } from "../lib/billing/schemas.js";
import { getAutoTopUp, putAutoTopUp, startPaymentMethodSetup } from "../lib/topup/settings.js";
import { parseBody } from "../lib/http/input.js";
import type { AutoTopUpResponse, CancelResponse, ChangePlanResponse, CheckoutResponse } from "../lib/http/responses.js";
import { type RouteAction, router } from "../lib/http/router.js";
import { httpHandler, type Route } from "../lib/http/stack.js";

/**
 * Everything that changes what a user pays: a subscription or a credit pack through Stripe
 * Checkout, a plan change and a cancellation, auto top-up's settings and the card it charges. They all write billing state, so they share the one
 * billing function with table write access (the portal function only reads).
 */
const routes: Record<string, RouteAction<BillingAppDeps, UserPrincipal>> = {
  "POST /v1/billing/subscribe": (event, deps, user): Promise<CheckoutResponse> =>
    startSubscriptionCheckout(deps.billing, { userId: user.userId, email: user.email, ...parseBody(subscribeBody, event) }),
  "POST /v1/billing/checkout": (event, deps, user): Promise<CheckoutResponse> =>
    startPackCheckout(deps.billing, { userId: user.userId, email: user.email, ...parseBody(packCheckoutBody, event) }),
  "POST /v1/billing/change-plan": (event, deps, user): Promise<ChangePlanResponse> => changePlan(deps.billing, { userId: user.userId, ...parseBody(changePlanBody, event) }),
  "POST /v1/billing/cancel": (event, deps, user): Promise<CancelResponse> => {
    parseBody(emptyBody, event);
    return cancelSubscription(deps.billing, user.userId);
  },
  "GET /v1/billing/auto-topup": (_event, deps, user): Promise<AutoTopUpResponse> => getAutoTopUp(deps.billing, user.userId),
  "PUT /v1/billing/auto-topup": (event, deps, user): Promise<AutoTopUpResponse> => putAutoTopUp(deps.billing, user.userId, parseBody(autoTopUpBody, event)),
  "POST /v1/billing/payment-method": (event, deps, user): Promise<CheckoutResponse> => {
    parseBody(emptyBody, event);
    return startPaymentMethodSetup(deps.billing, { userId: user.userId, email: user.email });
  },
};

export const route: Route<BillingAppDeps> = router(routes, requireUser);

// Cold start: bad config throws here, naming the variable; missing Stripe keys answer 503 per request.
export const handler = httpHandler(route, billingAppDeps());
