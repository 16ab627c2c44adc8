import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from "aws-lambda";

/** An API Gateway HTTP API (payload 2.0) event after the stack ran: `body` is parsed JSON. */
export type HttpEvent = Omit<APIGatewayProxyEventV2, "body"> & { body?: unknown };
export type HttpResult = APIGatewayProxyStructuredResultV2 & { statusCode: number; headers: Record<string, string> };

/** Balances and holds are per caller and change every call: nothing may cache them. */
export const JSON_HEADERS = { "Content-Type": "application/json", "Cache-Control": "no-store" } as const;

export function json(body: unknown, statusCode = 200, headers: Record<string, string> = {}): HttpResult {
  return { statusCode, headers: { ...JSON_HEADERS, ...headers }, body: JSON.stringify(body) };
}
