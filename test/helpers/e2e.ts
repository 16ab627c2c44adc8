import { type ChildProcess, spawn } from "node:child_process";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { checkResponse } from "./openapi.js";

/** `npm start` (infra/local/start.ts) as a child process, in memory unless `args` say otherwise, on the given ports. */
export function startLocalStack(
  env: Record<string, string>,
  args = ["--in-memory"],
): { child: ChildProcess; output: () => string; errors: () => string } {
  const child = spawn(process.execPath, ["--import", "tsx", "infra/local/start.ts", ...args], {
    // unless a test asks for them: the SQS stand-in on any free port, and no outgoing webhooks
    env: { ...process.env, SQS_LOCAL_PORT: "0", APP_WEBHOOK_URL: "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    err += chunk.toString();
  });
  return { child, output: () => out, errors: () => err };
}

export async function until(check: () => boolean, what: string, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Ctrl-C, then SIGKILL after 15 s: a killed start.ts would leave its DynamoDB Local (Java) running. */
export async function stopLocalStack(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGINT");
  if ((await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 15_000, "timeout"))])) === "timeout") child.kill("SIGKILL");
}

/**
 * fetch, with every answer checked against the OpenAPI document (test/helpers/openapi.ts) before
 * the caller sees it: the e2e tests' HTTP helper. The body is read from a clone, so the caller can
 * still read the response.
 */
export async function checkedFetch(input: Request | string | URL, init?: RequestInit): Promise<Response> {
  const request = new Request(input, init);
  const response = await fetch(request);
  const text = await response.clone().text();
  checkResponse(`${request.method} ${new URL(request.url).pathname}`, {
    status: response.status,
    headers: Object.fromEntries(response.headers),
    body: text ? JSON.parse(text) : undefined,
  });
  return response;
}

/** A request the proxy forwarded: its path, its body, and whether the answer was dropped. */
export interface ProxiedRequest {
  path: string;
  body: string;
  dropped: boolean;
}

/**
 * A 127.0.0.1 HTTP proxy in front of the local stack that can lose answers: for a path armed with
 * `dropNextAnswer(path)` it forwards the request, waits until the server has answered in full (so
 * the server DID apply it), then destroys the client's connection without sending a byte of it —
 * the network fault after which only an idempotent retry is safe.
 */
export async function startFaultProxy(target: string): Promise<{
  url: string;
  requests: ProxiedRequest[];
  dropNextAnswer(path: string, times?: number): void;
  close(): Promise<void>;
}> {
  const upstream = new URL(target);
  const armed = new Map<string, number>();
  const requests: ProxiedRequest[] = [];
  const server: Server = createServer((incoming, outgoing) => {
    const chunks: Buffer[] = [];
    incoming.on("data", (chunk: Buffer) => chunks.push(chunk));
    incoming.on("end", () => {
      const body = Buffer.concat(chunks);
      const path = new URL(incoming.url ?? "/", "http://proxy").pathname;
      const drops = armed.get(path) ?? 0;
      const dropped = drops > 0;
      if (dropped) armed.set(path, drops - 1);
      requests.push({ path, body: body.toString("utf8"), dropped });
      const forward = httpRequest(
        { host: upstream.hostname, port: upstream.port, method: incoming.method, path: incoming.url, headers: { ...incoming.headers, host: upstream.host } },
        (answer) => {
          const answerChunks: Buffer[] = [];
          answer.on("data", (chunk: Buffer) => answerChunks.push(chunk));
          answer.on("end", () => {
            if (dropped) {
              incoming.socket.destroy(); // the server answered; the client never hears it
              return;
            }
            outgoing.writeHead(answer.statusCode ?? 502, answer.headers);
            outgoing.end(Buffer.concat(answerChunks));
          });
        },
      );
      forward.on("error", () => incoming.socket.destroy());
      forward.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    dropNextAnswer: (path, times = 1) => armed.set(path, (armed.get(path) ?? 0) + times),
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
