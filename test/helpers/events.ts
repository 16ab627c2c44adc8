import { randomUUID } from "node:crypto";
import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2, Context } from "aws-lambda";

export interface EventOptions {
  /** e.g. "POST /v1/gate/authorize"; method and path are taken from it */
  routeKey: string;
  /** an object is sent as JSON; a string is sent as is */
  body?: unknown;
  /** send the body base64-encoded, as API Gateway does for binary content types */
  base64?: boolean;
  token?: string;
  headers?: Record<string, string>;
  query?: Record<string, string>;
  requestId?: string;
}

/** A real API Gateway HTTP API payload 2.0 event, as Lambda receives it (headers lower-cased). */
export function httpEvent(options: EventOptions): APIGatewayProxyEventV2 {
  const [method = "GET", path = "/"] = options.routeKey.split(" ");
  const text =
    options.body === undefined ? undefined : typeof options.body === "string" ? options.body : JSON.stringify(options.body);
  const headers: Record<string, string> = {
    accept: "application/json",
    host: "api.example.com",
    "user-agent": "vitest",
    "x-forwarded-proto": "https",
    ...(text === undefined ? {} : { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) }),
    ...(options.token ? { authorization: `Bearer ${options.token}` } : {}),
  };
  for (const [name, value] of Object.entries(options.headers ?? {})) headers[name.toLowerCase()] = value;
  const query = options.query ?? {};
  const requestId = options.requestId ?? `req-${randomUUID()}`;
  const now = Date.now();
  return {
    version: "2.0",
    routeKey: options.routeKey,
    rawPath: path,
    rawQueryString: new URLSearchParams(query).toString(),
    headers,
    ...(Object.keys(query).length ? { queryStringParameters: query } : {}),
    requestContext: {
      accountId: "123456789012",
      apiId: "api1234",
      domainName: "api.example.com",
      domainPrefix: "api",
      http: { method, path, protocol: "HTTP/1.1", sourceIp: "203.0.113.7", userAgent: "vitest" },
      requestId,
      routeKey: options.routeKey,
      stage: "$default",
      time: new Date(now).toUTCString(),
      timeEpoch: now,
    },
    isBase64Encoded: options.base64 === true,
    ...(text === undefined ? {} : { body: options.base64 ? Buffer.from(text).toString("base64") : text }),
  };
}

export function lambdaContext(awsRequestId = randomUUID()): Context {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName: "creditgate-test",
    functionVersion: "$LATEST",
    invokedFunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:creditgate-test",
    memoryLimitInMB: "512",
    awsRequestId,
    logGroupName: "/aws/lambda/creditgate-test",
    logStreamName: "2026/01/01/[$LATEST]test",
    getRemainingTimeInMillis: () => 30_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

export interface Answer {
  status: number;
  headers: Record<string, string>;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON
  json: any;
}

type Handler = (event: APIGatewayProxyEventV2, context: Context) => Promise<APIGatewayProxyResultV2>;

/** Invokes a Lambda handler with an event and reads the JSON answer. */
export async function invoke(handler: Handler, options: EventOptions | APIGatewayProxyEventV2): Promise<Answer> {
  const event = "version" in options ? options : httpEvent(options);
  const result = await handler(event, lambdaContext());
  if (typeof result !== "object") throw new Error(`expected a structured result, got ${typeof result}`);
  return {
    status: result.statusCode ?? 200,
    headers: Object.fromEntries(Object.entries(result.headers ?? {}).map(([k, v]) => [k.toLowerCase(), String(v)])),
    json: result.body ? JSON.parse(result.body) : undefined,
  };
}
