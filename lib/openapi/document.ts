import * as z from "zod/mini";
import "../zod-locale.js";
import { ERRORS, type ErrorName } from "../http/error-schemas.js";
import packageJson from "../../package.json" with { type: "json" };
import { type Caller, CALLER_ERRORS, type Operation, OPERATIONS } from "./operations.js";
import { webhookOperations } from "./webhooks.js";

/**
 * The OpenAPI 3.1 document, generated from the zod schemas the handlers validate with and answer
 * with (lib/http/schemas.ts, lib/billing/schemas.ts, lib/http/responses.ts, lib/http/error-schemas.ts):
 * one source, no hand-written copy.
 *
 * Made with zod 4's own `z.toJSONSchema`, not zod-openapi or zod-to-openapi: OpenAPI 3.1's schema
 * dialect is JSON Schema 2020-12, which is what z.toJSONSchema emits, so the generators would only
 * wrap this same call (zod-openapi 5+ does) and add a dependency to every Lambda bundle. What is left
 * to write here is the document's frame (paths, responses, security), which is data, not plumbing.
 */

type JsonSchema = Record<string, unknown>;
export type OpenApiDocument = JsonSchema & { openapi: "3.1.0"; paths: Record<string, Record<string, JsonSchema>> };

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/** VALIDATION_FAILED → ValidationFailedError: the component name of an error's body. */
const errorSchemaName = (name: ErrorName) =>
  `${name
    .toLowerCase()
    .split("_")
    .map((word) => word.charAt(0).toUpperCase() + word.slice(1))
    .join("")}Error`;

/** `Authorize` + `Request`: the component name of an operation's body or response. */
const componentName = (operation: Operation, suffix: string) =>
  `${operation.operationId.charAt(0).toUpperCase()}${operation.operationId.slice(1)}${suffix}`;

/** A schema as JSON Schema 2020-12, without the `$schema` line (the document's dialect says it). */
function jsonSchema(schema: z.ZodMiniType, io: "input" | "output"): JsonSchema {
  // `unrepresentable: "any"`: a transform has no JSON form; its input or output side is what is described.
  const { $schema: _dialect, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: "any" }) as JsonSchema;
  return rest;
}

const SECURITY: Record<Caller, Record<string, string[]>[]> = {
  user: [{ userJwt: [] }],
  // OpenAPI 3.1 lets a non-OAuth scheme list the roles it needs: the service token's `gate` scope.
  service: [{ serviceJwt: ["gate"] }],
  // Stripe's signature header is checked by the handler over the raw body, not by a bearer scheme.
  stripe: [],
  public: [],
};

function errorResponses(operation: Operation): Record<string, JsonSchema> {
  const byStatus = new Map<number, ErrorName[]>();
  for (const name of new Set([...CALLER_ERRORS[operation.caller], ...operation.errors])) {
    const status = ERRORS[name].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), name]);
  }
  const responses: Record<string, JsonSchema> = {};
  for (const [status, names] of [...byStatus].sort(([a], [b]) => a - b)) {
    const schemas = names.map((name) => ref(errorSchemaName(name)));
    responses[String(status)] = {
      description: names.map((name) => `${name}: ${ERRORS[name].description}`).join("\n\n"),
      ...(status === 429 ? { headers: { "Retry-After": { description: "seconds to wait", schema: { type: "integer" } } } } : {}),
      content: { "application/json": { schema: schemas.length === 1 ? schemas[0] : { oneOf: schemas } } },
    };
  }
  return responses;
}

function queryParameters(query: z.ZodMiniType): JsonSchema[] {
  // The query as the handler reads it after parsing (io "output": `limit` is an integer 1..100).
  const schema = jsonSchema(query, "output") as { properties?: Record<string, JsonSchema>; required?: string[] };
  return Object.entries(schema.properties ?? {}).map(([name, property]) => ({
    name,
    in: "query",
    required: schema.required?.includes(name) ?? false,
    schema: property,
  }));
}

function operationObject(routeKey: string, operation: Operation, schemas: Record<string, JsonSchema>): JsonSchema {
  const parameters = operation.query ? queryParameters(operation.query) : [];
  if (operation.caller === "stripe") {
    parameters.push({ name: "Stripe-Signature", in: "header", required: true, schema: { type: "string" } });
  }
  let requestBody: JsonSchema | undefined;
  if (operation.body) {
    const name = componentName(operation, "Request");
    // io "input": what the caller sends (an optional body is described by the object it may be).
    schemas[name] = jsonSchema(operation.body.schema, "input");
    requestBody = { required: operation.body.required, content: { "application/json": { schema: ref(name) } } };
  }
  const responseName = componentName(operation, "Response");
  schemas[responseName] = jsonSchema(operation.response, "output");
  return {
    operationId: operation.operationId,
    summary: operation.summary,
    ...(operation.description ? { description: operation.description } : {}),
    tags: [operation.tag],
    security: SECURITY[operation.caller],
    ...(parameters.length ? { parameters } : {}),
    ...(requestBody ? { requestBody } : {}),
    responses: {
      "200": {
        description: `OK (${routeKey})`,
        headers: {
          "Cache-Control": { schema: { type: "string", const: operation.cacheControl ?? "no-store" } },
        },
        content: { "application/json": { schema: ref(responseName) } },
      },
      ...errorResponses(operation),
    },
  };
}

/** The whole document; its version is package.json's. */
export function openApiDocument(version: string = packageJson.version): OpenApiDocument {
  const schemas: Record<string, JsonSchema> = {};
  for (const name of Object.keys(ERRORS) as ErrorName[]) schemas[errorSchemaName(name)] = jsonSchema(ERRORS[name].body, "output");
  const paths: Record<string, Record<string, JsonSchema>> = {};
  for (const [routeKey, operation] of Object.entries(OPERATIONS)) {
    const [method = "", path = ""] = routeKey.split(" ");
    paths[path] ??= {};
    (paths[path] as Record<string, JsonSchema>)[method.toLowerCase()] = operationObject(routeKey, operation, schemas);
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "creditgate",
      version,
      description:
        "Credits and subscriptions for AI chat apps. The gate (authorize, settle, release) is called by the chat backend with a service token; the rest by the signed-in user. Human contract: docs/http-contract.md.",
    },
    servers: [{ url: "/", description: "the API's base URL (API Gateway, or http://127.0.0.1:3001 for `npm start`)" }],
    tags: [
      { name: "gate", description: "The chat backend's calls around each model call (service token)." },
      { name: "credits", description: "The signed-in user's balances and history (user token)." },
      { name: "billing", description: "Stripe Checkout, portal and subscription changes (user token)." },
      { name: "stripe", description: "Stripe's webhook (Stripe-Signature)." },
      { name: "meta", description: "Public and cacheable, no token: this document, and the plans for pricing pages." },
      { name: "webhooks", description: "What creditgate POSTs to the app's endpoint (APP_WEBHOOK_URL), signed with Standard Webhooks." },
    ],
    paths,
    webhooks: webhookOperations(),
    components: {
      securitySchemes: {
        userJwt: {
          type: "http",
          scheme: "bearer",
          bearerFormat: "JWT",
          description: "An end user's JWT; `sub` is the user id. A user only ever sees their own account.",
        },
        serviceJwt: {
          type: "http",
          scheme: "bearer",
          bearerFormat: "JWT",
          description:
            "The chat backend's JWT; its `scope` (space-separated) must include `gate` (and its `aud` the service audience when one is configured). A user token on the gate gets 403.",
        },
      },
      schemas: Object.fromEntries(Object.entries(schemas).sort(([a], [b]) => a.localeCompare(b))),
    },
  };
}

/** The document as served and as written to openapi.json: two-space JSON and a final newline. */
export function openApiText(version: string = packageJson.version): string {
  return `${JSON.stringify(openApiDocument(version), null, 2)}\n`;
}
