/**
 * `npm run openapi`: writes openapi.json (the OpenAPI 3.1 document made from the zod schemas in lib/)
 * and client/src/generated/openapi.ts (the typed paths @creditgate/client calls through). Both are
 * committed; a test fails when either is stale.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { openApiArtifacts } from "./artifacts.js";

for (const [path, text] of Object.entries(await openApiArtifacts())) {
  mkdirSync(dirname(resolve(path)), { recursive: true });
  writeFileSync(resolve(path), text);
  console.log(`wrote ${path}`);
}
