import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";

/**
 * The app's side of the webhooks, for tests: an HTTP endpoint on 127.0.0.1 that verifies every
 * delivery with the standardwebhooks library itself (not our signing code) and records what it
 * accepted. `respond` decides each answer (a status, or "timeout": never answer).
 */
export interface ReceivedEvent {
  id: string;
  type: string;
  timestamp: string;
  data: { userId: string; seq: number; position: string } & Record<string, unknown>;
}

export interface WebhookReceiver {
  url: string;
  /** every verified delivery, duplicates included, in arrival order */
  deliveries: ReceivedEvent[];
  /** deliveries whose signature or timestamp did not verify */
  invalid: number;
  /** the accepted (2xx) events, once per id */
  accepted: Map<string, ReceivedEvent>;
  /** attempts per event id */
  attempts: Map<string, number>;
  stop(): Promise<void>;
}

export async function startWebhookReceiver(options: {
  secret: string;
  respond?: (event: ReceivedEvent, attempt: number) => number | "timeout";
}): Promise<WebhookReceiver> {
  const verifier = new Webhook(options.secret);
  const hanging = new Set<ServerResponse>();
  const receiver: Omit<WebhookReceiver, "url" | "stop"> = { deliveries: [], invalid: 0, accepted: new Map(), attempts: new Map() };
  const server = createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    let event: ReceivedEvent;
    try {
      event = verifier.verify(body, request.headers as Record<string, string>) as ReceivedEvent;
      if (request.headers["webhook-id"] !== event.id) throw new Error("webhook-id is not the event's id");
    } catch {
      receiver.invalid += 1;
      response.writeHead(400).end();
      return;
    }
    receiver.deliveries.push(event);
    const attempt = (receiver.attempts.get(event.id) ?? 0) + 1;
    receiver.attempts.set(event.id, attempt);
    const answer = options.respond?.(event, attempt) ?? 204;
    if (answer === "timeout") {
      hanging.add(response);
      return;
    }
    if (answer >= 200 && answer < 300) receiver.accepted.set(event.id, event);
    response.writeHead(answer).end();
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  const { port } = server.address() as AddressInfo;
  return Object.assign(receiver, {
    url: `http://127.0.0.1:${port}/webhooks`,
    stop: () =>
      new Promise<void>((done) => {
        for (const response of hanging) response.destroy();
        server.closeAllConnections();
        server.close(() => done());
      }),
  });
}

/** A fresh Standard Webhooks secret (whsec_ and 24 random bytes, base64). */
export const newWebhookSecret = (): string => `whsec_${Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString("base64")}`;
