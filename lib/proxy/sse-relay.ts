import { finished, type Readable } from "node:stream";
import { createParser, type EventSourceMessage } from "eventsource-parser";
import { type CallUsage, reportedUsage } from "./usage.js";

/**
 * Reads an upstream's chat completion stream (OpenAI's SSE: `data: {chunk}` events, then
 * `data: [DONE]`) and hands each event on as it arrives, learning on the way what the call used.
 * eventsource-parser does the SSE framing; this decides, per event, what the client sees.
 */
export interface RelayState {
  /** the usage the stream reported (its last chunk, when include_usage is on) */
  usage?: CallUsage;
  /** the text the model produced, for the estimate when no usage comes */
  produced: string[];
  /** the upstream sent `data: [DONE]` */
  done: boolean;
  /**
   * the stream has said something: a token (content, reasoning, a tool call, a refusal), a
   * finish reason, usage or [DONE]. Until then (OpenAI's opening role-only chunk) an error is a
   * failure before the first token.
   */
  said: boolean;
  /** an `{"error":…}` event the upstream sent in the stream */
  error?: unknown;
}

export function newRelayState(): RelayState {
  return { produced: [], done: false, said: false };
}

type Delta = { content?: unknown; reasoning?: unknown; reasoning_content?: unknown; refusal?: unknown; tool_calls?: unknown };

/**
 * Every piece of text a chunk's choices add (content, reasoning, refusals, tool call names and
 * arguments), collected in `into`; true when one of them is not empty.
 */
function producedText(chunk: Record<string, unknown>, into: string[]): boolean {
  if (!Array.isArray(chunk.choices)) return false;
  let said = false;
  for (const choice of chunk.choices as { delta?: Delta; message?: Delta }[]) {
    const delta = choice?.delta ?? choice?.message;
    if (typeof delta !== "object" || delta === null) continue;
    for (const text of [delta.content, delta.reasoning, delta.reasoning_content, delta.refusal]) said = taken(text, into) || said;
    if (!Array.isArray(delta.tool_calls)) continue;
    for (const call of delta.tool_calls as { function?: { name?: unknown; arguments?: unknown } }[]) {
      said = taken(call?.function?.name, into) || said;
      said = taken(call?.function?.arguments, into) || said;
    }
  }
  return said;
}

/** Collects a text; true when it is a text and not empty. (Not a closure: this runs per chunk.) */
function taken(text: unknown, into: string[]): boolean {
  if (typeof text !== "string") return false;
  into.push(text);
  return text.length > 0;
}

/**
 * What one upstream event becomes for the client (undefined: nothing). Usage was asked for
 * upstream whether or not the client asked; a client that did not gets no usage chunk and no
 * `usage` field, as if the proxy were not there.
 */
export function relayEvent(event: EventSourceMessage, state: RelayState, clientWantsUsage: boolean): string | undefined {
  if (state.done) return undefined; // nothing after the end is part of the answer
  if (event.data === "[DONE]") {
    state.done = true;
    state.said = true;
    return "data: [DONE]\n\n";
  }
  let chunk: unknown;
  try {
    chunk = JSON.parse(event.data);
  } catch {
    return frame(event); // not ours to judge: passed on as sent
  }
  if (typeof chunk !== "object" || chunk === null || Array.isArray(chunk)) return frame(event);
  const fields = chunk as Record<string, unknown>;
  if (fields.error !== undefined) state.error = fields.error;
  if (producedText(fields, state.produced) || hasFinishReason(fields)) state.said = true;
  if (!("usage" in fields)) return frame(event);
  const usage = reportedUsage(fields.usage);
  if (usage) {
    state.usage = usage;
    state.said = true;
  }
  if (clientWantsUsage) return frame(event);
  const choices = Array.isArray(fields.choices) ? fields.choices : [];
  if (choices.length === 0 && fields.error === undefined) return undefined; // the usage-only chunk
  // OpenAI's compact chunks end in `,"usage":null}` when usage was asked for: cut it out as text
  // (only the top level's last key can end the data so) rather than serialize every chunk again
  if (fields.usage === null && event.data.endsWith(',"usage":null}')) return frame({ ...event, data: `${event.data.slice(0, -',"usage":null}'.length)}}` });
  const { usage: _usage, ...rest } = fields;
  return frame({ ...event, data: JSON.stringify(rest) });
}

const hasFinishReason = (chunk: Record<string, unknown>) =>
  Array.isArray(chunk.choices) && (chunk.choices as { finish_reason?: unknown }[]).some((choice) => typeof choice?.finish_reason === "string");

function frame(event: EventSourceMessage): string {
  // the usual event (one line of data, no name or id) without building lines: this runs per chunk
  if (!event.event && !event.id && !event.data.includes("\n")) return `data: ${event.data}\n\n`;
  const lines = [];
  if (event.event) lines.push(`event: ${event.event}`);
  if (event.id) lines.push(`id: ${event.id}`);
  for (const line of event.data.split("\n")) lines.push(`data: ${line}`);
  return `${lines.join("\n")}\n\n`;
}

/**
 * Feeds an upstream body through the parser and hands over the events of each read together, in
 * order: what arrived together leaves together, one write to the client rather than one per event —
 * under load a read holds several chunks, and each write is a system call. A handover returns a
 * promise only when it must be waited for (the client is behind); nothing more is read meanwhile,
 * so a slow client slows the read rather than piling up. Rejects when the body breaks off (an
 * error, or a close before its end) or a handover throws or rejects; the body is then destroyed.
 *
 * Pulled with `'readable'` and `read()`, not `for await` (whose async iterator costs promise ticks
 * on every chunk of every stream) and not `'data'` with `pause()`: when the call's deadline aborts
 * the upstream request, Node drops a paused response's buffered rest for its `'data'` listeners —
 * the usage a provider had already sent to a client that stopped reading — but leaves it to `read()`.
 */
export function readEvents(body: Readable, onEvents: (events: EventSourceMessage[]) => Promise<void> | undefined): Promise<void> {
  let batch: EventSourceMessage[] = [];
  // 1 MiB per event: far above any chunk, and a bound on what a broken upstream can make us hold
  const parser = createParser({ onEvent: (event) => batch.push(event), maxBufferSize: 1024 * 1024 });
  const decoder = new TextDecoder();
  const take = () => {
    const events = batch;
    batch = [];
    return events;
  };
  return new Promise<void>((resolve, reject) => {
    /** the handover in progress: nothing is read meanwhile, and the end waits for it */
    let handing: Promise<void> | undefined;
    let failed = false;
    const fail = (error: unknown) => {
      if (failed) return;
      failed = true;
      handing = undefined;
      body.off("readable", pull);
      body.destroy();
      reject(error);
    };
    function pull() {
      if (handing || failed) return;
      for (let bytes = body.read() as Uint8Array | null; bytes !== null; bytes = body.read() as Uint8Array | null) {
        try {
          parser.feed(decoder.decode(bytes, { stream: true }));
        } catch (error) {
          fail(error);
          return;
        }
        if (batch.length === 0) continue;
        let handover: Promise<void> | undefined;
        try {
          handover = onEvents(take());
        } catch (error) {
          fail(error);
          return;
        }
        if (handover === undefined) continue; // taken at once: read on
        handing = handover.then(() => {
          handing = undefined;
          pull();
        }, fail);
        return;
      }
    }
    body.on("readable", pull);
    /** until no handover is in flight: each one ends by reading (and handing over) what waits behind it */
    const idle = async () => {
      while (handing && !failed) await handing;
    };
    // Ended (everything read) or broken off (what arrived before is still handed over first).
    finished(body, (broke) => {
      // A body destroyed (broken off) emits no more 'readable': what it holds is read here.
      pull();
      idle()
        .then(async () => {
          if (failed) return;
          if (broke) return fail(broke);
          parser.feed(decoder.decode());
          if (batch.length) await onEvents(take());
          body.off("readable", pull);
          resolve();
        })
        .catch(fail);
    });
  });
}
