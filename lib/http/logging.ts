import type { MiddlewareObj, Request } from "@middy/core";
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2, Context } from "aws-lambda";
import { AppError } from "../errors.js";
import { logger } from "../logger.js";

const startedAt = new WeakMap<object, number>();

function logOutcome(request: Request<APIGatewayProxyEventV2, APIGatewayProxyResultV2>) {
  const response = request.response;
  const statusCode = typeof response === "object" && response !== null ? response.statusCode : undefined;
  const started = startedAt.get(request);
  logger.info("request done", {
    statusCode,
    ...(started === undefined ? {} : { durationMs: Math.round(performance.now() - started) }),
  });
}

/**
 * Stamps every log line of a request with API Gateway's request id (what the caller sees) and the
 * Lambda request id (what CloudWatch shows), and ends each request with one summary line.
 */
export function requestLogging(): MiddlewareObj<APIGatewayProxyEventV2, APIGatewayProxyResultV2> {
  return {
    name: "requestLogging",
    before: (request) => {
      startedAt.set(request, performance.now());
      logger.resetKeys();
      if ((request.context as Partial<Context>)?.awsRequestId) logger.addContext(request.context);
      logger.appendKeys({
        requestId: request.event.requestContext?.requestId ?? request.context?.awsRequestId,
        routeKey: request.event.routeKey,
      });
    },
    after: logOutcome,
    onError: logOutcome,
  };
}

/**
 * One line per failed request, at the level it deserves. An AppError is an answer the contract
 * defines (a refusal, or a 5xx such as STRIPE_NOT_CONFIGURED that every request of a deployment
 * without Stripe keys gets): INFO for 4xx, WARN for 5xx, code and message only — its stack says
 * nothing and an ERROR per request would drown real failures. Anything else is a bug or an
 * outage: ERROR with the full error and stack.
 */
export function logRequestError(error: unknown, status: number, code: string): void {
  if (!(error instanceof AppError)) logger.error("request failed", error as Error);
  else if (status >= 500) logger.warn("request failed", { status, code, message: error.message });
  else logger.info("request refused", { status, code });
}
