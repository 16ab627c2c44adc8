import { MODEL_IDS } from "../catalog.js";
import type { ProxyDeps, ProxyRequest } from "./deps.js";
import { type ResponseSink, sendJson } from "./response-sink.js";

/** When the catalog's models were first offered; OpenAI's list carries a creation time per model. */
const CATALOG_EPOCH_SECONDS = 1_767_225_600; // 2026-01-01

/** `GET /v1/models`: the catalog's models in OpenAI's list shape (any valid token may read it). */
export async function listModels(deps: ProxyDeps, request: ProxyRequest, sink: ResponseSink): Promise<void> {
  await deps.auth.authenticate(request.headers.authorization);
  const data = MODEL_IDS.map((id) => ({ id, object: "model", created: CATALOG_EPOCH_SECONDS, owned_by: id.split("/")[0] ?? "creditgate" }));
  await sendJson(sink, 200, { object: "list", data });
}
