import SwaggerParser from "@apidevtools/swagger-parser";
import { describe, expect, it } from "vitest";
import type { Route } from "../../lib/http/stack.js";
import { openApiDocument } from "../../lib/openapi/document.js";
import { OPERATIONS } from "../../lib/openapi/operations.js";
import { routeTable } from "../../lib/routes.js";
import type { AppDeps } from "../../lib/runtime.js";
import { useAppFixture, useFunctions } from "../helpers/http.js";
import { checkResponse, ResponseContractError } from "../helpers/openapi.js";
import { SONNET } from "../helpers/ledger.js";
import { serviceToken } from "../helpers/tokens.js";

const fx = useAppFixture();
const fns = useFunctions(fx);

describe("the OpenAPI document", () => {
  it("is a valid OpenAPI 3.1 document by @apidevtools/swagger-parser", async () => {
    const document = openApiDocument();
    expect(document.openapi).toBe("3.1.0");
    // validate() dereferences in place: give it a copy
    await expect(SwaggerParser.validate(structuredClone(document) as never)).resolves.toBeTruthy();
    // and the validator does refuse: a response object needs a description
    const broken = structuredClone(document);
    const getCredits = broken.paths["/v1/credits"]?.get as { responses: { "200": { description?: string } } };
    delete getCredits.responses["200"].description;
    await expect(SwaggerParser.validate(broken as never)).rejects.toThrow();
  });

  it("describes exactly the routes of lib/routes.ts, with the two bearer schemes", () => {
    const document = openApiDocument();
    const documented = Object.entries(document.paths).flatMap(([path, methods]) =>
      Object.keys(methods).map((method) => `${method.toUpperCase()} ${path}`),
    );
    expect(documented.sort()).toEqual([...routeTable().keys()].sort());
    expect(Object.keys(OPERATIONS).sort()).toEqual([...routeTable().keys()].sort());
    const gate = document.paths["/v1/gate/authorize"]?.post as { security: unknown };
    expect(gate.security).toEqual([{ serviceJwt: ["gate"] }]);
    const credits = document.paths["/v1/credits"]?.get as { security: unknown };
    expect(credits.security).toEqual([{ userJwt: [] }]);
    // the public routes: no security scheme, cacheable
    for (const path of ["/v1/plans", "/v1/openapi.json"]) {
      const operation = document.paths[path]?.get as { security: unknown; responses: { "200": { headers: { "Cache-Control": { schema: { const: string } } } } } };
      expect(operation.security, path).toEqual([]);
      expect(operation.responses["200"].headers["Cache-Control"].schema.const, path).toBe("public, max-age=300");
    }
  });

  it("is served at GET /v1/openapi.json without a token, cacheable, equal to the generated one", async () => {
    const res = await fx.call(fns.credits.route, { routeKey: "GET /v1/openapi.json" });
    expect(res.status).toBe(200);
    expect(res.headers["cache-control"]).toMatch(/^public, max-age=\d+$/);
    expect(res.json).toEqual(openApiDocument());
  });
});

describe("the response check (test/helpers/openapi.ts) can fail", () => {
  /** The gate's real authorize, through the real stack, with one field the document does not name added. */
  const leakyGate: Route<AppDeps> = async (event, deps) => {
    const result = await fns.gate.route(event, deps);
    return { ...result, body: JSON.stringify({ ...JSON.parse(result.body as string), debugTrace: "internal" }) };
  };

  it("refuses a body with a field the document does not describe, sent through the real stack", async () => {
    const event = {
      routeKey: "POST /v1/gate/authorize",
      token: await serviceToken(),
      body: { userId: "check-u1", requestId: "r1", model: SONNET, inputTokens: 10, maxOutputTokens: 10 },
    };
    // the real route passes …
    await expect(fx.call(fns.gate.route, event)).resolves.toMatchObject({ status: 200 });
    // … the same answer plus one undocumented field does not
    await expect(fx.call(leakyGate, { ...event, body: { ...event.body, requestId: "r2" } })).rejects.toThrow(
      /must NOT have additional properties/,
    );
  });

  it("refuses a status the operation does not declare, a wrong type, an undocumented error detail", () => {
    const ok = { holdId: "hold_x", reserved: 1, balance: 2, available: 1, plan: "free" };
    const headers = { "cache-control": "no-store" };
    expect(() => checkResponse("POST /v1/gate/authorize", { status: 200, headers, body: ok })).not.toThrow();
    expect(() => checkResponse("POST /v1/gate/authorize", { status: 201, headers, body: ok })).toThrow(ResponseContractError);
    expect(() => checkResponse("POST /v1/gate/authorize", { status: 200, headers, body: { ...ok, reserved: "1" } })).toThrow(
      ResponseContractError,
    );
    expect(() => checkResponse("POST /v1/gate/authorize", { status: 200, headers: { "cache-control": "max-age=60" }, body: ok })).toThrow(
      /Cache-Control/,
    );
    const insufficient = { error: { code: "INSUFFICIENT_CREDITS", message: "no", required: 3, balance: 1, available: 1 } };
    expect(() => checkResponse("POST /v1/gate/authorize", { status: 402, headers, body: insufficient })).not.toThrow();
    expect(() =>
      checkResponse("POST /v1/gate/authorize", { status: 402, headers, body: { error: { ...insufficient.error, holds: [] } } }),
    ).toThrow(ResponseContractError);
    // credits never answers 402: the document says so
    expect(() => checkResponse("GET /v1/credits", { status: 402, headers, body: insufficient })).toThrow(/declares no 402/);
  });
});
