import type { MiddlewareObj } from "@middy/core";
import httpJsonBodyParser from "@middy/http-json-body-parser";
import type { APIGatewayProxyEventV2 } from "aws-lambda";
import { ValidationError } from "../errors.js";

/** Our bodies are a few hundred bytes; 16 KiB leaves room and bounds what we parse. */
export const MAX_BODY_BYTES = 16 * 1024;

/**
 * A body the parser refused. The error is raised by `parseBody` inside the route, after the
 * caller is authenticated, so a caller without credentials learns nothing about our parsing.
 */
export class RejectedBody {
  constructor(readonly error: ValidationError) {}
}

/**
 * JSON bodies: size cap (checked on the decoded size, without decoding), base64 decoding and
 * parsing by @middy/http-json-body-parser. Oversize or malformed bodies become 400
 * VALIDATION_FAILED on `body` (not 413/415/422: the contract has one code for bad input).
 */
export function jsonBody(maxBytes = MAX_BODY_BYTES): MiddlewareObj<APIGatewayProxyEventV2> {
  // Any content type is parsed as JSON: callers authenticate with bearer tokens, not cookies.
  const parser = httpJsonBodyParser({ disableContentTypeCheck: true });
  return {
    name: "jsonBody",
    before: (request) => {
      // From here on the body is parsed JSON or a RejectedBody (see HttpEvent).
      const event = request.event as Omit<APIGatewayProxyEventV2, "body"> & { body?: unknown };
      const { body, isBase64Encoded } = event;
      if (body === undefined || body === null || body === "") {
        event.body = undefined;
        return;
      }
      if (typeof body !== "string") return;
      const size = Buffer.byteLength(body, isBase64Encoded ? "base64" : "utf8");
      if (size > maxBytes) {
        event.body = new RejectedBody(new ValidationError(`body: larger than ${maxBytes} bytes`, "body"));
        return;
      }
      try {
        parser.before?.(request);
        event.isBase64Encoded = false; // the body is decoded now
      } catch {
        event.body = new RejectedBody(new ValidationError("body: not valid JSON", "body"));
      }
    },
  };
}
