import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2, APIGatewayProxyStructuredResultV2, Context } from "aws-lambda";

/** API Gateway refuses payloads above 10 MB; the local API does the same rather than buffer forever. */
const MAX_BODY_BYTES = 10 * 1024 * 1024;
const TEXT_TYPES = /^(application\/(json|x-www-form-urlencoded|.*\+json)|text\/)/i;

export class PayloadTooLargeError extends Error {}

/**
 * A request's whole body, refused past `maxBytes`. Listeners rather than `for await`: the async
 * iterator adds promise ticks to every request on the way to the proxy's first token. A body too
 * large is refused at once and the rest read and dropped, so the 413 can still be answered on the
 * connection.
 */
export function readBody(request: IncomingMessage, maxBytes = MAX_BODY_BYTES): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = () => {
      request.off("data", onData);
      request.off("end", onEnd);
      request.off("error", onError);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= maxBytes) {
        chunks.push(chunk);
        return;
      }
      stop();
      request.resume(); // drained, not kept
      reject(new PayloadTooLargeError("payload too large"));
    };
    const onEnd = () => {
      stop();
      resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
    };
    const onError = (error: Error) => {
      stop();
      reject(error);
    };
    request.on("data", onData);
    request.on("end", onEnd);
    request.on("error", onError);
  });
}

/**
 * Builds the API Gateway HTTP API (payload format 2.0) event Lambda would receive: lower-cased
 * headers with repeats joined by commas, cookies split out, query parameters joined the same way,
 * text bodies as strings and anything else base64-encoded, exactly as API Gateway does.
 */
export function toApiGatewayEvent(request: IncomingMessage, body: Buffer, routeKey: string): APIGatewayProxyEventV2 {
  const url = new URL(request.url ?? "/", "http://localhost");
  const headers: Record<string, string> = {};
  let cookies: string[] | undefined;
  for (let i = 0; i < request.rawHeaders.length; i += 2) {
    const name = (request.rawHeaders[i] as string).toLowerCase();
    const value = request.rawHeaders[i + 1] as string;
    if (name === "cookie") {
      cookies = [...(cookies ?? []), ...value.split(/;\s*/)];
      continue;
    }
    headers[name] = headers[name] === undefined ? value : `${headers[name]},${value}`;
  }
  const query: Record<string, string> = {};
  for (const [name, value] of url.searchParams) query[name] = query[name] === undefined ? value : `${query[name]},${value}`;
  const method = (request.method ?? "GET").toUpperCase();
  const isText = body.length === 0 || TEXT_TYPES.test(headers["content-type"] ?? "");
  const now = Date.now();
  return {
    version: "2.0",
    routeKey,
    rawPath: url.pathname,
    rawQueryString: url.search.slice(1),
    ...(cookies ? { cookies } : {}),
    headers,
    ...(Object.keys(query).length ? { queryStringParameters: query } : {}),
    requestContext: {
      accountId: "000000000000",
      apiId: "local",
      domainName: headers.host ?? "localhost",
      domainPrefix: "local",
      http: {
        method,
        path: url.pathname,
        protocol: `HTTP/${request.httpVersion}`,
        sourceIp: request.socket.remoteAddress ?? "127.0.0.1",
        userAgent: headers["user-agent"] ?? "",
      },
      requestId: randomUUID(),
      routeKey,
      stage: "$default",
      time: new Date(now).toUTCString(),
      timeEpoch: now,
    },
    isBase64Encoded: !isText,
    ...(body.length ? { body: isText ? body.toString("utf8") : body.toString("base64") } : {}),
  };
}

/** A Lambda context for a local invocation with a real deadline. */
export function localContext(functionName: string, timeoutMs: number): Context {
  const deadline = Date.now() + timeoutMs;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: "$LATEST",
    invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${functionName}`,
    memoryLimitInMB: "1024",
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: "local",
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/** Writes a handler's result the way API Gateway does (a bare object or string becomes JSON 200). */
export function writeResult(response: ServerResponse, result: APIGatewayProxyResultV2): void {
  const structured: APIGatewayProxyStructuredResultV2 =
    typeof result === "object" && result !== null && "statusCode" in result
      ? result
      : { statusCode: 200, body: typeof result === "string" ? result : JSON.stringify(result), headers: { "content-type": "application/json" } };
  const body = structured.body ? Buffer.from(structured.body, structured.isBase64Encoded ? "base64" : "utf8") : Buffer.alloc(0);
  const headers: Record<string, string | number | string[]> = { ...(structured.headers ?? {}) } as Record<string, string | number>;
  if (structured.cookies?.length) headers["set-cookie"] = structured.cookies;
  headers["content-length"] = body.length;
  response.writeHead(structured.statusCode ?? 200, headers);
  response.end(body);
}
