import type { Readable } from "node:stream";
import { Agent as HttpAgent, type IncomingMessage, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";

/**
 * The provider's answer: status, headers, and the body as it arrives. Node's own HTTP client, not
 * fetch: a chat stream is hundreds of small chunks, and fetch hands each through WHATWG streams,
 * which cost the proxy more per chunk than relaying it; Node's streams do not. Connections are
 * kept alive in one pool per container, so a warm proxy opens none per call.
 */
export interface UpstreamAnswer {
  status: number;
  header(name: string): string | undefined;
  body: Readable;
  text(): Promise<string>;
}

const agents = { "http:": new HttpAgent({ keepAlive: true }), "https:": new HttpsAgent({ keepAlive: true }) } as const;

/** POSTs `body` to `url`; rejects when no answer starts (unreachable, refused, aborted by `signal`). */
export function postUpstream(url: string, headers: Record<string, string>, body: string, signal: AbortSignal): Promise<UpstreamAnswer> {
  const target = new URL(url);
  const send = target.protocol === "https:" ? httpsRequest : httpRequest;
  const agent = target.protocol === "https:" ? agents["https:"] : agents["http:"];
  return new Promise((resolve, reject) => {
    const request = send(
      target,
      { method: "POST", agent, signal, headers: { ...headers, "content-length": String(Buffer.byteLength(body)) } },
      (response: IncomingMessage) => {
        resolve({
          status: response.statusCode ?? 502,
          header: (name) => {
            const value = response.headers[name.toLowerCase()];
            return Array.isArray(value) ? value.join(", ") : value;
          },
          body: response,
          text: async () => {
            const chunks: Buffer[] = [];
            for await (const chunk of response) chunks.push(chunk as Buffer);
            return Buffer.concat(chunks).toString("utf8");
          },
        });
      },
    );
    request.once("error", reject);
    request.end(body);
  });
}
