/**
 * One base class; every error a caller may see is a named subclass carrying its HTTP status and
 * contract code. `toErrorBody` (lib/http/error-response.ts) is the only place that turns them into responses.
 */
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class ValidationError extends AppError {
  constructor(message: string, field?: string) {
    super(400, "VALIDATION_FAILED", message, field ? { field } : {});
  }
}

export class UnknownModelError extends AppError {
  constructor(model: string) {
    super(400, "UNKNOWN_MODEL", `Model '${model.slice(0, 100)}' is not in the catalog`, { field: "model" });
  }
}

export class UnauthorizedError extends AppError {
  constructor() {
    super(401, "UNAUTHORIZED", "Missing or invalid credentials");
  }
}

export class ForbiddenError extends AppError {
  constructor(message = "This token may not call this route") {
    super(403, "FORBIDDEN", message);
  }
}

export class NotFoundError extends AppError {
  constructor(message: string) {
    super(404, "NOT_FOUND", message);
  }
}

export class ConflictError extends AppError {
  constructor(message: string, code = "CONFLICT", details: Record<string, unknown> = {}) {
    super(409, code, message, details);
  }
}

export class InsufficientCreditsError extends AppError {
  constructor(required: number, balance: number, available: number) {
    super(402, "INSUFFICIENT_CREDITS", "Not enough credits for this request", { required, balance, available });
  }
}

/**
 * The account's plan does not include the model, or allows no call this large: 403 with the
 * cheapest plan that would, so the app can offer the upgrade (docs/entitlements.md).
 */
export class PlanRequiredError extends AppError {
  constructor(details: { model: string; plan: string; requiredPlan: string; reason: "MODEL_NOT_IN_PLAN" | "RESERVATION_OVER_PLAN_LIMIT"; reserved: number }) {
    super(
      403,
      "PLAN_REQUIRED",
      details.reason === "MODEL_NOT_IN_PLAN"
        ? `The ${details.plan} plan does not include ${details.model}; the ${details.requiredPlan} plan does`
        : `A call reserving ${details.reserved} credits is above the ${details.plan} plan's largest; the ${details.requiredPlan} plan allows it`,
      details,
    );
  }
}

export class RateLimitedError extends AppError {
  constructor(retryAfterSeconds: number) {
    super(429, "RATE_LIMITED", "Too many requests; slow down", { retryAfterSeconds });
  }
}

export class StripeNotConfiguredError extends AppError {
  constructor(missing: string[]) {
    super(503, "STRIPE_NOT_CONFIGURED", `Stripe is not configured on this deployment (missing: ${missing.join(", ")})`);
  }
}

export class UpstreamError extends AppError {
  /**
   * `ambiguous`: the provider may have acted without us hearing (a 5xx, a timeout, a dropped
   * connection); a retry must not start afresh blindly: it reuses the same idempotency key, or
   * first reads what the provider did (an auto top-up reads its invoice, then pays an open one
   * under a new key, since Stripe replays a 500 to its key for 24 hours: lib/topup/run.ts).
   */
  constructor(
    message = "The payment provider did not answer; nothing was changed, please retry",
    readonly ambiguous = false,
    /** the provider's HTTP status when it answered (none: a timeout, a dropped connection) */
    readonly providerStatus?: number,
  ) {
    super(502, "UPSTREAM_ERROR", message);
  }

  /** The provider answered with a 5xx, an answer Stripe keeps for the request's idempotency key (24 hours). */
  get answeredServerError(): boolean {
    return this.providerStatus !== undefined && this.providerStatus >= 500;
  }
}

/** Contention that outlived our retries: nothing was written, the caller may retry. */
export class BusyError extends AppError {
  /** `cause`: the last transient error (throttling, conflict), for our logs; never sent to the caller. */
  constructor(cause?: unknown) {
    super(409, "CONFLICT", "The account is busy with concurrent updates; retry the request", { retryable: true });
    if (cause !== undefined) this.cause = cause;
  }
}
