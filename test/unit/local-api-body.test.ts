import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PayloadTooLargeError, readBody } from "../../infra/local/api-gateway.js";

/**
 * The local servers' request bodies (infra/local/api-gateway.ts `readBody`), over a real loopback
 * connection: a body is read whole, and one too large is refused while the connection can still
 * carry the 413 that says so.
 */
const LIMIT = 64 * 1024;
let baseUrl: string;
/** how each read ended, in arrival order */
const outcomes: Promise<string>[] = [];
const server = createServer((incoming, response) => {
  const reading = readBody(incoming, LIMIT);
  outcomes.push(
    reading.then(
      (body) => `read ${body.length}`,
      (error) => (error instanceof PayloadTooLargeError ? "too large" : `error ${(error as Error).message}`),
    ),
  );
  reading.then(
    (body) => response.writeHead(200, { "content-type": "text/plain" }).end(`read ${body.length}`),
    (error) => response.writeHead(error instanceof PayloadTooLargeError ? 413 : 500).end(error instanceof PayloadTooLargeError ? "too large" : "other"),
  );
});

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

/** Posts `size` bytes in `pieces` writes and resolves with the status and body the server answered. */
function post(size: number, pieces: number): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const outgoing = request(`${baseUrl}/`, { method: "POST", headers: { "content-length": String(size) } }, (response) => {
      let text = "";
      response.setEncoding("utf8");
      response.on("data", (piece) => {
        text += piece;
      });
      response.on("end", () => resolve({ status: response.statusCode ?? 0, text }));
    });
    outgoing.on("error", reject);
    const piece = Buffer.alloc(Math.ceil(size / pieces), 0x61);
    for (let sent = 0; sent < size; sent += piece.length) outgoing.write(piece.subarray(0, Math.min(piece.length, size - sent)));
    outgoing.end();
  });
}

describe("the local API's request body", () => {
  it("is read whole, however many pieces it arrives in", async () => {
    expect(await post(LIMIT, 1)).toEqual({ status: 200, text: `read ${LIMIT}` });
    expect(await post(LIMIT, 16)).toEqual({ status: 200, text: `read ${LIMIT}` });
    expect(await post(0, 1)).toEqual({ status: 200, text: "read 0" });
  });

  for (const framing of ["content-length", "chunked"] as const) {
    it(`from a client that leaves mid-body, is refused rather than waited for forever (${framing})`, async () => {
      const before = outcomes.length;
      const outgoing = request(`${baseUrl}/`, { method: "POST", headers: framing === "content-length" ? { "content-length": "1000" } : {} });
      outgoing.on("error", () => undefined);
      outgoing.write(Buffer.alloc(100, 0x61));
      while (outcomes.length === before) await new Promise((resolve) => setTimeout(resolve, 5));
      outgoing.destroy();
      const outcome = await Promise.race([outcomes[before], new Promise((resolve) => setTimeout(() => resolve("hung"), 2_000))]);
      expect(outcome).toMatch(/^error /);
    });
  }

  it("past its limit is refused with a 413 the client receives, not a dropped connection", async () => {
    expect(await post(LIMIT + 1, 1)).toEqual({ status: 413, text: "too large" });
    expect(await post(LIMIT * 8, 32)).toEqual({ status: 413, text: "too large" });
  });
});
