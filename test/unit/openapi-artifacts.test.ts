import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { CLIENT_TYPES_FILE, OPENAPI_FILE, openApiArtifacts } from "../../infra/openapi/artifacts.js";

describe("the committed OpenAPI artifacts", () => {
  it("are what `npm run openapi` makes from the zod schemas now, byte for byte (run it and commit when this fails)", async () => {
    const artifacts = await openApiArtifacts();
    expect(Object.keys(artifacts).sort()).toEqual([CLIENT_TYPES_FILE, OPENAPI_FILE].sort());
    for (const [path, text] of Object.entries(artifacts)) {
      // compared as strings, not parsed: a stale whitespace or key order is stale too
      expect(readFileSync(path, "utf8") === text, `${path} is stale: run npm run openapi`).toBe(true);
    }
  });
});
