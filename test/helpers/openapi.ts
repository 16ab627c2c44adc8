import { Ajv2020, type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { openApiDocument } from "../../lib/openapi/document.js";

/**
 * Checks a response against the OpenAPI document with ajv (JSON Schema 2020-12, OpenAPI 3.1's
 * dialect): its status must be one the operation declares, its body must match that status's
 * schema (strict objects: an undocumented field fails) and a 200's Cache-Control the declared one.
 * routeCaller (test/helpers/http.ts) and checkedFetch (test/helpers/e2e.ts) run every response
 * through it, so the document cannot drift from what the code answers.
 */

const document = openApiDocument();
const DOCUMENT_ID = "https://creditgate.invalid/openapi.json";
// allowUnionTypes: `"type": ["string", "number"]` is plain JSON Schema (and OpenAPI 3.1), not a mistake to flag
const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
// the document's own keywords (openapi, info, paths…) are not JSON Schema: the schemas inside it are
for (const keyword of ["openapi", "info", "servers", "tags", "paths", "components", "webhooks"]) ajv.addKeyword(keyword);
addFormats.default(ajv);
ajv.addSchema({ ...document, $id: DOCUMENT_ID });

/** A JSON pointer token (RFC 6901): `/v1/credits` → `~1v1~1credits`. */
const pointer = (token: string) => token.replaceAll("~", "~0").replaceAll("/", "~1");

const validators = new Map<string, ValidateFunction>();
function validatorFor(path: string, method: string, status: string): ValidateFunction {
  const key = `${method} ${path} ${status}`;
  let validate = validators.get(key);
  if (!validate) {
    const location = ["paths", path, method, "responses", status, "content", "application/json", "schema"].map(pointer).join("/");
    validate = ajv.compile({ $ref: `${DOCUMENT_ID}#/${location}` });
    validators.set(key, validate);
  }
  return validate;
}

export interface CheckedResponse {
  status: number;
  /** lower-cased names */
  headers: Record<string, string>;
  body: unknown;
}

export class ResponseContractError extends Error {}

/** Throws a ResponseContractError when the document does not describe this response of `routeKey` ("GET /v1/credits"). */
export function checkResponse(routeKey: string, response: CheckedResponse): void {
  const [method = "", path = ""] = routeKey.split(" ");
  // A CORS preflight is answered by the stack's CORS middleware (lib/http/stack.ts), not by an operation.
  if (method === "OPTIONS") return;
  const operation = document.paths[path]?.[method.toLowerCase()] as { responses: Record<string, unknown> } | undefined;
  const where = `${routeKey} → ${response.status}`;
  if (!operation) {
    // A route the API does not have: its one answer is the contract's 404.
    const validate = ajv.compile({ $ref: `${DOCUMENT_ID}#/components/schemas/NotFoundError` });
    if (response.status !== 404 || !validate(response.body)) {
      throw new ResponseContractError(`${where}: an unknown route must answer 404 NOT_FOUND, got ${JSON.stringify(response.body)}`);
    }
    return;
  }
  const status = String(response.status);
  if (!operation.responses[status]) {
    throw new ResponseContractError(
      `${where}: the document declares no ${status} for this operation (it declares ${Object.keys(operation.responses).join(", ")}); body ${JSON.stringify(response.body)}`,
    );
  }
  const validate = validatorFor(path, method.toLowerCase(), status);
  if (!validate(response.body)) {
    throw new ResponseContractError(`${where}: the body does not match the document: ${ajv.errorsText(validate.errors)}; body ${JSON.stringify(response.body)}`);
  }
  if (status === "200") {
    const declared = (operation.responses["200"] as { headers: { "Cache-Control": { schema: { const: string } } } }).headers["Cache-Control"].schema.const;
    if (response.headers["cache-control"] !== declared) {
      throw new ResponseContractError(`${where}: Cache-Control is ${response.headers["cache-control"]}, the document says ${declared}`);
    }
  }
}

/** The errors of a webhook body against the document's `webhooks` entry for its type (empty: it conforms). */
export function webhookBodyErrors(body: { type: string }): string[] {
  const location = ["webhooks", body.type, "post", "requestBody", "content", "application/json", "schema"].map(pointer).join("/");
  const validate = ajv.compile({ $ref: `${DOCUMENT_ID}#/${location}` });
  return validate(body) ? [] : (validate.errors ?? []).map((error) => `${error.instancePath} ${error.message}`);
}
