import type { APIGatewayProxyStructuredResultV2 } from "aws-lambda";
import { describe, expect, it } from "vitest";
import { localContext } from "../../infra/local/api-gateway.js";
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
import { errorResponse, toErrorBody } from "../../lib/http/error-response.js";
import type { HttpResult } from "../../lib/http/response.js";
import { httpHandler } from "../../lib/http/stack.js";
import { logger, withInvocationLogger } from "../../lib/logger.js";
import { httpEvent, lambdaContext } from "../helpers/events.js";
import { captureLogs } from "../helpers/logs.js";

const logs = captureLogs();

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

/** A function behind the real HTTP stack whose route throws `error` (after `delayMs`). */
const failing = (error: unknown, delayMs = 0) =>
  httpHandler<{ corsOrigin: string }>(async (): Promise<HttpResult> => {
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    throw error;
  }, { corsOrigin: "https://app.example.com" });

async function call(handler: ReturnType<typeof failing>, requestId: string, context = lambdaContext()) {
  const event = httpEvent({ routeKey: "POST /v1/billing/subscribe", requestId });
  return (await handler(event, context)) as APIGatewayProxyStructuredResultV2;
}

const failures = () => logs.lines().filter((line) => line.message === "request failed" || line.message === "request refused");

describe("request error logging", () => {
  it("logs an expected 503 STRIPE_NOT_CONFIGURED at WARN, code and message only, no stack", async () => {
    const answer = await call(failing(new StripeNotConfiguredError(["STRIPE_SECRET_KEY"])), "req-503");
    expect(answer.statusCode).toBe(503);
    const [line, ...others] = failures();
    expect(others).toEqual([]);
    expect(line).toMatchObject({ level: "WARN", status: 503, code: "STRIPE_NOT_CONFIGURED", requestId: "req-503" });
    expect(line?.message).toBe("request failed");
    expect(line?.error).toBeUndefined();
    expect(JSON.stringify(line)).not.toMatch(/\bat .*\.ts:\d+/); // no stack frames anywhere in the line
  });

  it("logs an expected refusal (4xx) at INFO", async () => {
    await call(failing(new InsufficientCreditsError(75, 10, 5)), "req-402");
    expect(failures()).toEqual([expect.objectContaining({ level: "INFO", message: "request refused", status: 402, code: "INSUFFICIENT_CREDITS" })]);
  });

  it("logs an unknown error at ERROR with its stack, while the caller gets a bare 500", async () => {
    const answer = await call(failing(new Error("disk on fire")), "req-500");
    expect(answer.statusCode).toBe(500);
    const [line] = failures();
    expect(line).toMatchObject({ level: "ERROR", message: "request failed", requestId: "req-500" });
    const error = line?.error as { message: string; stack: string };
    expect(error.message).toBe("disk on fire");
    expect(error.stack).toMatch(/\n\s+at /);
  });
});

describe("local invocations each have their own logger", () => {
  it("labels overlapping invocations of two functions with their own name and request id, and leaks nothing", async () => {
    // The slow one fails last, after the other function's invocation began: with one shared
    // logger its line carried the other function's name and request id.
    logger.info("before the invocations");
    const gateContext = localContext("chatGate", 10_000);
    const subscribeContext = localContext("subscribe", 15_000);
    await Promise.all([
      withInvocationLogger(gateContext, () => call(failing(new Error("gate broke"), 30), "req-gate", gateContext)),
      withInvocationLogger(subscribeContext, () => call(failing(new StripeNotConfiguredError(["STRIPE_SECRET_KEY"]), 5), "req-subscribe", subscribeContext)),
    ]);
    const byLevel = (level: string) => failures().find((line) => line.level === level);
    expect(byLevel("ERROR")).toMatchObject({ function_name: "chatGate", requestId: "req-gate", function_request_id: gateContext.awsRequestId });
    expect(byLevel("WARN")).toMatchObject({
      function_name: "subscribe",
      requestId: "req-subscribe",
      function_request_id: subscribeContext.awsRequestId,
    });
    // the logger outside any invocation (the local server itself) kept its own keys: nothing leaked
    logger.info("after the invocations");
    const keys = (message: string) => {
      const line = logs.lines().find((candidate) => candidate.message === message);
      return { requestId: line?.requestId, function_name: line?.function_name, function_request_id: line?.function_request_id };
    };
    expect(keys("after the invocations").requestId).not.toMatch(/req-gate|req-subscribe/);
    expect(keys("after the invocations")).toEqual(keys("before the invocations"));
  });
});

describe("an invocation's logger, reused", () => {
  it("a child logger taken again carries none of its last invocation's keys, and the base's level set since", async () => {
    const first = localContext("chatProxy", 10_000);
    await withInvocationLogger(
      first,
      async () => {
        logger.appendKeys({ stripeEventId: "evt_from_the_first_call" });
        logger.info("first invocation");
      },
      { reuse: true },
    );
    const second = localContext("chatProxy", 10_000);
    await withInvocationLogger(second, async () => logger.info("second invocation"), { reuse: true });
    const line = (message: string) => logs.lines().find((candidate) => candidate.message === message);
    expect(line("first invocation")).toMatchObject({ stripeEventId: "evt_from_the_first_call", function_request_id: first.awsRequestId });
    expect(line("second invocation")?.function_request_id).toBe(second.awsRequestId);
    expect(line("second invocation")).not.toHaveProperty("stripeEventId");

    const level = logger.getLevelName();
    logger.setLogLevel("ERROR");
    try {
      withInvocationLogger(localContext("chatProxy", 10_000), () => logger.info("third invocation, below the level"), { reuse: true });
      expect(line("third invocation, below the level")).toBeUndefined();
    } finally {
      logger.setLogLevel(level);
    }
  });

  it("an invocation that throws gives its logger back labelled for the next one only", () => {
    const failing = localContext("chatProxy", 10_000);
    expect(() =>
      withInvocationLogger(
        failing,
        () => {
          logger.appendKeys({ stripeEventId: "evt_of_the_failed_call" });
          throw new Error("broke");
        },
        { reuse: true },
      ),
    ).toThrow("broke");
    const next = localContext("chatProxy", 10_000);
    withInvocationLogger(next, () => logger.info("after a failed invocation"), { reuse: true });
    const line = logs.lines().find((candidate) => candidate.message === "after a failed invocation");
    expect(line?.function_request_id).toBe(next.awsRequestId);
    expect(line).not.toHaveProperty("stripeEventId");
  });

  it("without reuse, work an invocation left running still logs under its own labels after another began", async () => {
    // a middy early timeout answers while the handler goes on (say, still calling Stripe)
    let release!: () => void;
    const stillRunning = new Promise<void>((resolve) => {
      release = resolve;
    });
    let lateLine!: Promise<void>;
    const first = localContext("subscribe", 10_000);
    await withInvocationLogger(first, async () => {
      lateLine = stillRunning.then(() => logger.error("late line of the first invocation"));
    });
    const second = localContext("subscribe", 10_000);
    await withInvocationLogger(second, async () => {
      logger.appendKeys({ requestId: "req-second" });
      release();
      await lateLine;
    });
    const line = logs.lines().find((candidate) => candidate.message === "late line of the first invocation");
    expect(line?.function_request_id).toBe(first.awsRequestId);
    expect(line?.requestId).not.toBe("req-second");
  });
});
