import type { Writable } from "node:stream";
import type { APIGatewayProxyEventV2, Context } from "aws-lambda";
import { serveFunctionUrlEvent, streamSink } from "../lib/proxy/function-url.js";
import { proxyDeps } from "../lib/proxy/runtime.js";

/**
 * The metered chat proxy (lib/proxy) as a response-streaming Lambda behind a Function URL
 * (`InvokeMode.RESPONSE_STREAM`): API Gateway HTTP APIs buffer whole responses, a Function URL
 * in this mode sends each write on as it is made.
 */

// Cold start: config validated (naming what is missing) before any request is taken.
const deps = proxyDeps();

/** Lambda's global (its Node.js runtime defines it); absent when this file is loaded elsewhere. */
const lambda = (globalThis as { awslambda?: typeof awslambda }).awslambda;

export const handler = lambda?.streamifyResponse(async (event: APIGatewayProxyEventV2, responseStream: Writable, context: Context) =>
  serveFunctionUrlEvent(deps, event, streamSink(responseStream, (stream, metadata) => lambda.HttpResponseStream.from(stream, metadata)), context),
);
