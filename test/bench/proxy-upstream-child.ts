/**
 * The proxy section's provider stand-in (infra/local/fake-upstream.ts) in a process of its own:
 * `node --import tsx test/bench/proxy-upstream-child.ts '{"apiKey":…,"scenario":{…}}'`, started
 * by test/bench/proxy-rig.ts. It answers every request with the one scenario and records when it
 * has read each request (by the body's `user` field, on the monotonic clock the bench shares);
 * `GET {controlUrl}/__arrivals` hands those over and forgets them. Prints
 * `{"baseUrl":…,"controlUrl":…}` once it listens on 127.0.0.1; exits on SIGTERM or stdin close.
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { startFakeUpstream, type UpstreamScenario } from "../../infra/local/fake-upstream.js";
import { announce, exitWhenTold, monotonicMs } from "./child-process.js";

const config = JSON.parse(process.argv[2] ?? "{}") as { apiKey: string; scenario: UpstreamScenario };
const upstream = await startFakeUpstream({ apiKey: config.apiKey });
const arrivals = new Map<string, number>();
upstream.scenario((body) => {
  // called as the stand-in has read the request: when it reached the "provider"
  if (typeof body.user === "string") arrivals.set(body.user, monotonicMs());
  return config.scenario;
});
// kept apart from the stand-in's own server, so nothing on the measured path changes
const control = createServer((request, response) => {
  if (request.method === "GET" && request.url === "/__arrivals") {
    const taken = Object.fromEntries(arrivals);
    arrivals.clear();
    upstream.calls.length = 0; // bounded memory over a long run
    response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(taken));
    return;
  }
  response.writeHead(404).end();
});
await new Promise<void>((resolve) => control.listen(0, "127.0.0.1", resolve));
exitWhenTold(async () => {
  control.closeAllConnections();
  await new Promise((resolve) => control.close(resolve));
  await upstream.close();
});
announce({ baseUrl: upstream.baseUrl, controlUrl: `http://127.0.0.1:${(control.address() as AddressInfo).port}` });
