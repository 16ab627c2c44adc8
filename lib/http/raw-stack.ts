import middy from "@middy/core";
import httpHeaderNormalizer from "@middy/http-header-normalizer";
import httpSecurityHeaders from "@middy/http-security-headers";
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2 } from "aws-lambda";
import { requestLogging } from "./logging.js";
import type { HttpResult } from "./response.js";
import { errorHandler } from "./stack.js";

/** A route that reads the body exactly as received (signature checks): no JSON parsing, no CORS. */
export type RawRoute<D> = (event: APIGatewayProxyEventV2, deps: D) => Promise<HttpResult>;

/**
 * The stack of server-to-server endpoints such as the Stripe webhook: request logging, lower-cased
 * headers, security headers and the error mapper, but the body left untouched (still base64 when
 * API Gateway encoded it) because a signature covers its exact bytes.
 */
export function rawBodyHandler<D>(route: RawRoute<D>, deps: D) {
  return middy<APIGatewayProxyEventV2, APIGatewayProxyResultV2>()
    .use(requestLogging())
    .use(httpHeaderNormalizer())
    .use(httpSecurityHeaders())
    .use(errorHandler())
    .handler((event) => route(event, deps));
}
