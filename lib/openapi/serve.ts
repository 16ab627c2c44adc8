import { json } from "../http/response.js";
import type { HttpEvent, HttpResult } from "../http/response.js";
import { parseQuery } from "../http/input.js";
import { noQuery } from "../http/schemas.js";
import { openApiDocument } from "./document.js";
import { OPENAPI_CACHE_CONTROL } from "./operations.js";

/** Built on first request and kept: the document changes only with a deployment. */
let document: ReturnType<typeof openApiDocument> | undefined;

/** GET /v1/openapi.json: no token needed, cacheable by browsers and CDNs (OPENAPI_CACHE_CONTROL). */
export function openApiResponse(event: HttpEvent): HttpResult {
  parseQuery(noQuery, event);
  document ??= openApiDocument();
  return json(document, 200, { "Cache-Control": OPENAPI_CACHE_CONTROL });
}
