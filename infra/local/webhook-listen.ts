/**
 * `npm run webhook:listen`: the app's side of creditgate's webhooks, for a newcomer. A receiver on
 * 127.0.0.1 (WEBHOOK_LISTEN_PORT, default 3002: where `npm start` delivers by default) that
 * verifies every delivery with the standardwebhooks library and prints each event on one line.
 * The secret: APP_WEBHOOK_SECRET, else the one `npm start` keeps in the data folder
 * (CREDITGATE_DATA_DIR, default .local).
 */
import { existsSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { resolve } from "node:path";
import { Webhook } from "standardwebhooks";
import { isMain } from "./is-main.js";

export const WEBHOOK_LISTEN_PORT = Number(process.env.WEBHOOK_LISTEN_PORT ?? 3002);
export const WEBHOOK_LISTEN_URL = `http://127.0.0.1:${WEBHOOK_LISTEN_PORT}/webhooks`;

/** One line per event: when, what, whose, at which seq, and what it says. */
export function describeEvent(event: { id: string; type: string; timestamp: string; data: Record<string, unknown> }, redelivery: boolean): string {
  const { userId, seq, position: _position, ...rest } = event.data;
  const details = Object.entries(rest)
    .map(([key, value]) => `${key}=${typeof value === "object" ? JSON.stringify(value) : String(value)}`)
    .join(" ");
  return `${event.timestamp}  ${event.type.padEnd(28)} user=${String(userId)} seq=${String(seq)}  ${details}  (${event.id}${redelivery ? ", redelivery" : ""})`;
}

function secretFromDataDir(): string | undefined {
  const file = resolve(process.env.CREDITGATE_DATA_DIR || ".local", "dev-secrets.json");
  if (!existsSync(file)) return undefined;
  return (JSON.parse(readFileSync(file, "utf8")) as { APP_WEBHOOK_SECRET?: string }).APP_WEBHOOK_SECRET;
}

function main(): void {
  const secret = process.env.APP_WEBHOOK_SECRET || secretFromDataDir();
  if (!secret) {
    console.error("webhook:listen: no signing secret. Start `npm start` once (it keeps one in .local/dev-secrets.json), or set APP_WEBHOOK_SECRET.");
    process.exit(1);
  }
  const verifier = new Webhook(secret);
  const seen = new Set<string>();
  const server = createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    try {
      const event = verifier.verify(body, request.headers as Record<string, string>) as { id: string; type: string; timestamp: string; data: Record<string, unknown> };
      console.log(describeEvent(event, seen.has(event.id)));
      seen.add(event.id);
      response.writeHead(204).end();
    } catch (error) {
      console.warn(`refused a delivery: ${(error as Error).message}`);
      response.writeHead(400).end();
    }
  });
  server.listen(WEBHOOK_LISTEN_PORT, "127.0.0.1", () => console.log(`listening on ${WEBHOOK_LISTEN_URL}; each verified event is printed below (Ctrl-C stops)`));
  process.on("SIGINT", () => server.close(() => process.exit(0)));
}

if (isMain(import.meta.url)) main();
