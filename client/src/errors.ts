/**
 * What a refused call throws: the API's error body (`{"error": {code, message, ...details}}`) as
 * an Error. 402 INSUFFICIENT_CREDITS and 403 PLAN_REQUIRED have their own classes, so a chat
 * backend can tell "top up" and "upgrade" apart from a failure with `instanceof`.
 */
export class CreditgateError extends Error {
  constructor(
    /** the HTTP status */
    readonly status: number,
    /** the contract's code: VALIDATION_FAILED, CONFLICT, NOT_FOUND, … (see openapi.json) */
    readonly code: string,
    message: string,
    /** the error's other fields (`field`, `reason`, `retryable`, …) */
    readonly details: Readonly<Record<string, unknown>> = {},
  ) {
    super(message);
    this.name = new.target.name;
  }

  /** A 409 the server marks `retryable: true`: nothing was written, the same request may be sent again. */
  get retryable(): boolean {
    return this.details.retryable === true;
  }
}

/** 402 INSUFFICIENT_CREDITS: the most the call can cost (`required`) is more than the user has `available`. */
export class InsufficientCreditsError extends CreditgateError {
  readonly required: number;
  readonly balance: number;
  readonly available: number;

  constructor(message: string, details: { required: number; balance: number; available: number }) {
    super(402, "INSUFFICIENT_CREDITS", message, details);
    this.required = details.required;
    this.balance = details.balance;
    this.available = details.available;
  }
}

/**
 * 403 PLAN_REQUIRED: the user's plan does not include the model (`MODEL_NOT_IN_PLAN`), or allows no
 * call reserving this much (`RESERVATION_OVER_PLAN_LIMIT`); `requiredPlan` is the cheapest plan that
 * does, for an upgrade offer.
 */
export class PlanRequiredError extends CreditgateError {
  readonly model: string;
  readonly plan: string;
  readonly requiredPlan: string;
  readonly reason: string;
  readonly reserved: number;

  constructor(message: string, details: { model: string; plan: string; requiredPlan: string; reason: string; reserved: number }) {
    super(403, "PLAN_REQUIRED", message, details);
    this.model = details.model;
    this.plan = details.plan;
    this.requiredPlan = details.requiredPlan;
    this.reason = details.reason;
    this.reserved = details.reserved;
  }
}

/**
 * meter(): the model call ran but its settle failed (refused, or retries ran out). The hold is still
 * open: settle it later with `holdId` and `result`'s usage (a settle after the hold expired still
 * charges), or release it. Carries the settle's own status, code and details; `cause` is its error.
 */
export class SettleFailedError<R = unknown> extends CreditgateError {
  constructor(
    readonly holdId: string,
    /** what the model call returned */
    readonly result: R,
    cause: unknown,
  ) {
    const refused = cause instanceof CreditgateError ? cause : undefined;
    super(
      refused?.status ?? 0,
      refused?.code ?? "NETWORK_ERROR",
      `settle of ${holdId} failed: ${cause instanceof Error ? cause.message : String(cause)}`,
      { ...refused?.details, holdId },
    );
    this.cause = cause;
  }
}

/** The error for a non-2xx answer; a body that is not the contract's (a proxy's 502 page) keeps the status. */
export function errorFromResponse(status: number, body: unknown): CreditgateError {
  const error = (body as { error?: unknown } | null)?.error;
  if (typeof error !== "object" || error === null) {
    return new CreditgateError(status, status >= 500 ? "INTERNAL" : "HTTP_ERROR", `HTTP ${status}`);
  }
  // a rest copy: the details are the body's own fields, never a prototype's
  const { code, message, ...details } = error as { code?: unknown; message?: unknown } & Record<string, unknown>;
  const text = typeof message === "string" ? message : `HTTP ${status}`;
  if (status === 402 && code === "INSUFFICIENT_CREDITS") {
    return new InsufficientCreditsError(text, {
      required: Number(details.required),
      balance: Number(details.balance),
      available: Number(details.available),
    });
  }
  if (status === 403 && code === "PLAN_REQUIRED") {
    return new PlanRequiredError(text, {
      model: String(details.model),
      plan: String(details.plan),
      requiredPlan: String(details.requiredPlan),
      reason: String(details.reason),
      reserved: Number(details.reserved),
    });
  }
  return new CreditgateError(status, typeof code === "string" ? code : "HTTP_ERROR", text, details);
}
