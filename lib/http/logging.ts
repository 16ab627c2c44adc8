import type { MiddlewareObj, Request } from "@middy/core";
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2, Context } from "aws-lambda";
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
