import { Agent, createServer, type IncomingMessage, request, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { EventSourceMessage } from "eventsource-parser";
import { describe, expect, it } from "vitest";
import { readEvents } from "../../lib/proxy/sse-relay.js";

/**
 * The relay's read of a provider's stream (lib/proxy/sse-relay.ts `readEvents`) over a real
 * loopback HTTP response, as the proxy gets it from node:http: a client that stops reading until
 * the call's deadline aborts the upstream request, a connection reset while a handover waits, a
 * connection closed after a whole answer.
 */

/**
 * Serves one request with `answer`, opens it as the proxy does (POST on a keep-alive agent, the
 * call's deadline as the request's `signal`) and hands the response to `use`.
 */
async function withResponse<T>(answer: (response: ServerResponse) => void, signal: AbortSignal, use: (body: IncomingMessage) => Promise<T>): Promise<T> {
  const server = createServer((_request, response) => answer(response));
  const agent = new Agent({ keepAlive: true });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const body = await new Promise<IncomingMessage>((resolve, reject) => {
      const outgoing = request(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, { method: "POST", signal, agent }, resolve);
      outgoing.once("error", reject);
      outgoing.end("{}");
    });
    return await use(body);
  } finally {
    agent.destroy();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

/** How a read ended, with a bound so a hang fails the test instead of timing it out. */
const outcomeOf = (reading: Promise<void>) =>
  Promise.race([
    reading.then(
      () => "resolved",
      (error) => `rejected: ${(error as Error).message}`,
    ),
    new Promise<string>((resolve) => setTimeout(() => resolve("hung"), 3_000)),
  ]);

/** A provider's answer: the head and a first event now, the rest `afterMs` later. */
const firstThen =
  (afterMs: number, rest: (response: ServerResponse) => void, headers: Record<string, string> = {}) =>
  (response: ServerResponse) => {
    response.writeHead(200, { "content-type": "text/event-stream", ...headers });
    response.write('data: {"n":1}\n\n');
    setTimeout(() => rest(response), afterMs);
  };

describe("the relay's read of a provider's stream over HTTP", () => {
  it("a client stalled until the deadline: the usage and [DONE] the provider had already sent are still read (the abort drops nothing)", async () => {
    const signal = AbortSignal.timeout(400);
    const deadline = new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
    const seen: string[] = [];
    const outcome = await withResponse(
      firstThen(50, (response) => {
        for (let n = 2; n <= 20; n++) response.write(`data: {"n":${n}}\n\n`);
        response.write('data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":19}}\n\n');
        response.end("data: [DONE]\n\n");
      }),
      signal,
      (body) => {
        let first = true;
        return outcomeOf(
          readEvents(body, async (events: EventSourceMessage[]) => {
            seen.push(...events.map((event) => event.data));
            if (!first) return;
            first = false;
            await deadline; // the write to a client that does not read, until the deadline
          }),
        );
      },
    );
    expect(signal.aborted).toBe(true);
    expect({ outcome, last: seen.at(-1), usage: seen.some((data) => data.includes('"usage"')), count: seen.length }).toEqual({
      outcome: "resolved",
      last: "[DONE]",
      usage: true,
      count: 22,
    });
  });

  it("a connection reset while a handover waits: what arrived before it is still handed over, then the read rejects", async () => {
    const seen: string[] = [];
    const outcome = await withResponse(
      firstThen(30, (response) => {
        response.write('data: {"n":2}\n\n');
        setTimeout(() => response.socket?.destroy(), 20);
      }),
      AbortSignal.timeout(5_000),
      (body) =>
        outcomeOf(
          readEvents(body, async (events) => {
            seen.push(...events.map((event) => event.data));
            await new Promise((resolve) => setTimeout(resolve, 200)); // a slow client, across the reset
          }),
        ),
    );
    expect(outcome).toMatch(/^rejected/);
    expect(seen).toEqual(['{"n":1}', '{"n":2}']);
  });

  it("a connection closed after a whole answer while a handover waits: every event is handed over, and the read resolves", async () => {
    const seen: string[] = [];
    const outcome = await withResponse(
      firstThen(
        20,
        (response) => {
          for (let n = 2; n <= 30; n++) response.write(`data: {"n":${n}}\n\n`);
          response.end("data: [DONE]\n\n");
        },
        { connection: "close" },
      ),
      AbortSignal.timeout(5_000),
      (body) => {
        let first = true;
        return outcomeOf(
          readEvents(body, async (events) => {
            seen.push(...events.map((event) => event.data));
            if (!first) return;
            first = false;
            await new Promise((resolve) => setTimeout(resolve, 200));
          }),
        );
      },
    );
    expect({ outcome, count: seen.length, last: seen.at(-1) }).toEqual({ outcome: "resolved", count: 31, last: "[DONE]" });
  });
});
