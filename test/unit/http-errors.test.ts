import { describe, expect, it } from "vitest";
import {
  BusyError,
  ConflictError,
  ForbiddenError,
  InsufficientCreditsError,
  NotFoundError,
  RateLimitedError,
  StripeNotConfiguredError,
  UnauthorizedError,
  UnknownModelError,
  UpstreamError,
  ValidationError,
} from "../../lib/errors.js";
import { errorResponse, toErrorBody } from "../../lib/http/errors.js";

describe("toErrorBody", () => {
  it.each([
    [new ValidationError("inputTokens: bad", "inputTokens"), 400, "VALIDATION_FAILED"],
    [new UnknownModelError("acme/x"), 400, "UNKNOWN_MODEL"],
    [new UnauthorizedError(), 401, "UNAUTHORIZED"],
    [new ForbiddenError(), 403, "FORBIDDEN"],
    [new NotFoundError("No such hold"), 404, "NOT_FOUND"],
    [new ConflictError("dup"), 409, "CONFLICT"],
    [new BusyError(), 409, "CONFLICT"],
    [new InsufficientCreditsError(75, 10, 5), 402, "INSUFFICIENT_CREDITS"],
    [new RateLimitedError(12), 429, "RATE_LIMITED"],
    [new StripeNotConfiguredError(["STRIPE_SECRET_KEY"]), 503, "STRIPE_NOT_CONFIGURED"],
    [new UpstreamError(), 502, "UPSTREAM_ERROR"],
  ])("maps %s to its status and code", (error, status, code) => {
    const mapped = toErrorBody(error);
    expect(mapped.status).toBe(status);
    expect(mapped.body.error).toMatchObject({ code, message: error.message });
  });

  it("carries required, balance and available on 402", () => {
    expect(toErrorBody(new InsufficientCreditsError(75, 10, 5)).body).toEqual({
      error: { code: "INSUFFICIENT_CREDITS", message: expect.any(String), required: 75, balance: 10, available: 5 },
    });
  });

  it("sets Retry-After on 429", () => {
    const response = errorResponse(new RateLimitedError(12));
    expect(response.statusCode).toBe(429);
    expect(response.headers["Retry-After"]).toBe("12");
  });

  it("answers anything else with a bare 500 that leaks nothing", () => {
    for (const error of [new Error("DynamoDB table arn:aws:… is gone"), "a string", undefined, { status: 400 }]) {
      const response = errorResponse(error);
      expect(response.statusCode).toBe(500);
      expect(JSON.parse(response.body ?? "")).toEqual({ error: { code: "INTERNAL", message: "Internal error" } });
    }
  });
});
