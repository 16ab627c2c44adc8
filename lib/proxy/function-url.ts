import type { Writable } from "node:stream";
import type { APIGatewayProxyEventV2, Context } from "aws-lambda";
import { withInvocationLogger } from "../logger.js";
import { serveProxyRequest } from "./chat-proxy.js";
import type { ProxyDeps, ProxyRequest } from "./deps.js";
import type { ResponseSink } from "./response-sink.js";

/**
 * The proxy behind a Lambda Function URL: its event (API Gateway's payload format 2.0) in, a
 * response stream that takes `{statusCode, headers}` before the body out. functions/chat-proxy.ts
 * hands it Lambda's stream; `npm start` (infra/local/proxy-server.ts) a Node HTTP response.
 */

/** The request as the use case takes it, from a Function URL event (the local server builds the same event). */
export function proxyRequestOf(event: APIGatewayProxyEventV2, context: Context, holdTtlMs: number): ProxyRequest {
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(event.headers ?? {})) headers[name.toLowerCase()] = value;
  const raw = event.body ?? "";
  return {
    method: event.requestContext.http.method.toUpperCase(),
    path: event.rawPath,
    headers,
    body: event.isBase64Encoded ? Buffer.from(raw, "base64").toString("utf8") : raw,
    deadline: answerDeadline(Date.now(), context.getRemainingTimeInMillis(), holdTtlMs),
  };
}

/**
 * A ResponseSink over a writable that takes `{statusCode, headers}` first: Lambda's
 * `awslambda.HttpResponseStream.from`, or a local stand-in with the same contract.
 */
export function streamSink(raw: Writable, withMetadata: (stream: Writable, metadata: { statusCode: number; headers: Record<string, string> }) => Writable): ResponseSink {
  let stream: Writable | undefined;
  let gone = false;
  const markGone = () => {
    gone = true;
  };
  raw.once("error", markGone);
  raw.once("close", () => {
    if (!raw.writableFinished) markGone();
  });
  return {
    start(statusCode, headers) {
      stream = withMetadata(raw, { statusCode, headers });
    },
    write(text) {
      if (gone || !stream) return;
      if (stream.write(text)) return;
      // backpressure: wait for the client, or for it to leave
      return new Promise<void>((resolve) => {
        const done = () => {
          stream?.off("drain", done);
          raw.off("close", done);
          resolve();
        };
        stream?.once("drain", done);
        raw.once("close", done);
      });
    },
    async end() {
      const target = stream ?? raw;
      if (gone || target.writableEnded) return;
      await new Promise<void>((resolve) => target.end(resolve));
    },
    get clientGone() {
      return gone;
    },
  };
}

/**
 * One invocation of the proxy, deployed or local, under a logger labelled with its context. The
 * proxy awaits all it starts (lib/proxy/chat-proxy.ts), so nothing logs after it ends and its child
 * logger may serve the next invocation (lib/logger.ts, `reuse`).
 */
export async function serveFunctionUrlEvent(
  deps: ProxyDeps,
  event: APIGatewayProxyEventV2,
  sink: ResponseSink,
  context: Context,
): Promise<void> {
  await withInvocationLogger(context, () => serveProxyRequest(deps, proxyRequestOf(event, context, deps.ledger.holdTtlMs), sink), { reuse: true });
}

/**
 * When the proxy must have finished answering: the function's deadline less a margin to settle in,
 * and never past the hold's own expiry (HOLD_TTL_SECONDS may be set below the function's timeout),
 * so the sweep never releases the hold of a call still running.
 */
export function answerDeadline(now: number, remainingMs: number, holdTtlMs: number): number {
  const SETTLE_MARGIN_MS = 10_000;
  return now + Math.max(1_000, Math.min(remainingMs, holdTtlMs) - SETTLE_MARGIN_MS);
}
