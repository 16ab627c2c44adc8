import middy, { type MiddlewareObj } from "@middy/core";
import httpCors from "@middy/http-cors";
import httpHeaderNormalizer from "@middy/http-header-normalizer";
import httpSecurityHeaders from "@middy/http-security-headers";
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2 } from "aws-lambda";
import { jsonBody } from "./body.js";
import { toErrorBody } from "./error-response.js";
import { logRequestError, requestLogging } from "./logging.js";
import { type HttpEvent, type HttpResult, json } from "./response.js";

/** A function's plain request handler: routes on `event.routeKey`, throws AppErrors for refusals. */
export type Route<D> = (event: HttpEvent, deps: D) => Promise<HttpResult>;

/** Turns any error into the contract's error response. Registered last, so its onError runs first. */
export function errorHandler(): MiddlewareObj<APIGatewayProxyEventV2, APIGatewayProxyResultV2> {
  return {
    name: "errorHandler",
    onError: (request) => {
      const { status, body, headers } = toErrorBody(request.error);
      logRequestError(request.error, status, body.error.code);
      // Not returned: CORS and security headers still decorate the error response after us.
      request.response = json(body, status, headers);
    },
  };
}

/**
 * The HTTP stack every API function shares: logging with request ids, lower-cased headers,
 * security headers, CORS for the app's own origin only, JSON bodies, and the error mapper.
 */
export function httpHandler<D extends { corsOrigin: string }>(route: Route<D>, deps: D) {
  return middy<APIGatewayProxyEventV2, APIGatewayProxyResultV2>()
    .use(requestLogging())
    .use(httpHeaderNormalizer())
    .use(httpSecurityHeaders())
    .use(
      httpCors({
        origins: [deps.corsOrigin],
        headers: "authorization,content-type",
        methods: "GET,POST,PUT,OPTIONS",
        maxAge: 600,
        disableBeforePreflightResponse: false,
      }),
    )
    .use(jsonBody())
    .use(errorHandler())
    .handler((event) => route(event as HttpEvent, deps));
}
