import type { IncomingMessage, ServerResponse } from "node:http";
import type { ProxyDeps } from "../../lib/proxy/deps.js";
import { serveFunctionUrlEvent, streamSink } from "../../lib/proxy/function-url.js";
import { PROXY_FUNCTION } from "../../lib/routes.js";
import { localContext, PayloadTooLargeError, readBody, toApiGatewayEvent } from "./api-gateway.js";

/**
 * The proxy's Function URL, locally: the same payload 2.0 event a Function URL sends (route key
 * `$default`), and a response stream that, like Lambda's `HttpResponseStream.from`, takes the
 * status and headers first and then sends every write to the client as it is made — no buffering.
 */

/** "METHOD /path" keys the proxy answers (lib/routes.ts), for the local server to route by. */
export const PROXY_ROUTE_KEYS = new Set<string>(PROXY_FUNCTION.paths);

/** A Function URL refuses request bodies above 6 MB; so does the stand-in. */
const MAX_REQUEST_BYTES = 6 * 1024 * 1024;

export async function serveProxyLocally(deps: ProxyDeps, request: IncomingMessage, response: ServerResponse): Promise<void> {
  let body: Buffer;
  try {
    body = await readBody(request, MAX_REQUEST_BYTES);
  } catch (error) {
    if (!(error instanceof PayloadTooLargeError)) throw error;
    response.writeHead(413, { "content-type": "application/json" });
    response.end(JSON.stringify({ error: { message: "Request body too large", type: "invalid_request_error", code: "request_too_large", param: null } }));
    return;
  }
  const event = toApiGatewayEvent(request, body, "$default");
  const context = localContext("chatProxy", PROXY_FUNCTION.timeoutSeconds * 1000);
  const sink = streamSink(response, (stream, metadata) => {
    // Not flushed on its own: the proxy starts an answer only as it writes (its first token, or a
    // whole JSON body), and Node sends the status and headers with that write, one send instead of
    // two on the way to the first token.
    response.writeHead(metadata.statusCode, metadata.headers);
    return stream;
  });
  await serveFunctionUrlEvent(deps, event, sink, context);
}
