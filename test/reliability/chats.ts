import { MODEL_IDS } from "../../lib/catalog.js";
import { decodeHoldId, encodeHoldId, type HoldRef } from "../../lib/ledger/hold-id.js";
import type { Answer } from "../helpers/events.js";
import { OPUS, SONNET } from "../helpers/http.js";
import { modelCost, type Random } from "./harness.js";

/**
 * Simulated chats of the chat backend against the gate, shared by the storm and the fault runs.
 * Each chat is one requestId on one account and issues its calls in a fixed order, so the first
 * outcome of its hold is known from the script alone; duplicates (a retried authorize, a settle
 * sent twice or twice at once) and reorders (release after settle, settle after release, a late
 * settle after the sweep expired the hold) are part of the script.
 */
export type ChatKind =
  | "settle"
  | "authorizeRetried"
  | "authorizeConcurrent"
  | "settleRetried"
  | "settleConcurrent"
  | "release"
  | "releaseAfterSettle"
  | "settleAfterRelease"
  | "releaseConcurrent"
  | "overage"
  | "forgedSettle"
  | "abandoned";

/** A field of a hold id an attacker changes (each one alone): the answer is the real hold's or 404. */
export type ForgedField = keyof HoldRef;
const FORGEABLE: ForgedField[] = ["userId", "requestId", "tag", "seq", "balance", "model", "reserved"];

/** The hold id with one field changed to a plausible lie. */
export function forgeHoldId(holdId: string, field: ForgedField): string {
  const ref = decodeHoldId(holdId);
  if (!ref) return holdId;
  const lie: Partial<HoldRef> = {
    userId: { userId: `${ref.userId.slice(0, 120)}x` },
    requestId: { requestId: `${ref.requestId.slice(0, 120)}x` },
    tag: { tag: `${ref.tag.slice(0, -1)}${ref.tag.endsWith("A") ? "B" : "A"}` },
    seq: { seq: ref.seq + 1 },
    balance: { balance: ref.balance * 1000 + 7 },
    model: { model: MODEL_IDS.find((model) => model !== ref.model) as string },
    reserved: { reserved: ref.reserved + 1 },
  }[field];
  return encodeHoldId({ ...ref, ...lie });
}

export interface Chat {
  userId: string;
  requestId: string;
  kind: ChatKind;
  model: string;
  inputTokens: number;
  maxOutputTokens: number;
  /** the tokens of the first settle (the one that counts) */
  usedInput: number;
  usedOutput: number;
  /** abandoned chats, after the sweep expired their hold */
  after?: "lateSettle" | "lateRelease" | "nothing";
  /** forgedSettle (and some late settles): the settle first sent with this field of the hold id forged */
  forged?: ForgedField;
  holdId?: string;
}

const SMALL_MODELS = [SONNET, "openai/gpt-5.2", "google/gemini-3-pro-preview", "mistralai/mistral-large-2512"];

export const KIND_WEIGHTS: Record<ChatKind, number> = {
  settle: 30,
  authorizeRetried: 8,
  authorizeConcurrent: 6,
  settleRetried: 8,
  settleConcurrent: 6,
  release: 8,
  releaseAfterSettle: 6,
  settleAfterRelease: 6,
  releaseConcurrent: 4,
  overage: 6,
  forgedSettle: 6,
  abandoned: 8,
};

/**
 * One chat. At most ~360 credits even with opus and overage, and small models only when
 * `allowOpus` is false, so an account of 10,000 credits never runs out: every authorize is admitted.
 */
export function makeChat(
  rng: Random,
  userId: string,
  requestId: string,
  options: { allowOpus: boolean; weights?: Record<ChatKind, number> },
): Chat {
  const kind = rng.weighted(options.weights ?? KIND_WEIGHTS);
  const model = options.allowOpus && rng.chance(0.15) ? OPUS : rng.pick(SMALL_MODELS);
  const inputTokens = rng.int(0, 4_000);
  const maxOutputTokens = rng.int(1, 2_000);
  const usedOutput = kind === "overage" ? maxOutputTokens + rng.int(1, maxOutputTokens) : rng.int(0, maxOutputTokens);
  const chat: Chat = { userId, requestId, kind, model, inputTokens, maxOutputTokens, usedInput: inputTokens, usedOutput };
  if (kind === "abandoned") chat.after = rng.pick(["lateSettle", "lateRelease", "nothing"] as const);
  if (kind === "forgedSettle" || (chat.after === "lateSettle" && rng.chance(0.5))) chat.forged = rng.pick(FORGEABLE);
  return chat;
}

/** What the model says a chat costs in the end: its first outcome, priced independently. */
export function expectedCharge(chat: Chat): number {
  switch (chat.kind) {
    case "release":
    case "settleAfterRelease":
    case "releaseConcurrent":
      return 0;
    case "abandoned":
      return chat.after === "lateSettle" ? modelCost(chat.model, chat.usedInput, chat.usedOutput) : 0;
    default:
      return modelCost(chat.model, chat.usedInput, chat.usedOutput);
  }
}

export const reservedOf = (chat: Pick<Chat, "model" | "inputTokens" | "maxOutputTokens">) =>
  modelCost(chat.model, chat.inputTokens, chat.maxOutputTokens);

/** How chats reach the gate, and where wrong answers are reported. */
export interface GateClient {
  call(routeKey: string, body: Record<string, unknown>): Promise<Answer>;
  surprises: string[];
  counts: { duplicates: number; reordered: number; forged?: number };
}

export function chatRunner(client: GateClient) {
  const { call, surprises, counts } = client;
  const ok = (answer: Answer, what: string) => {
    if (answer.status !== 200) surprises.push(`${what}: ${answer.status} ${JSON.stringify(answer.json)}`);
    return answer.json ?? {};
  };

  async function authorize(chat: Chat): Promise<string> {
    const json = ok(
      await call("POST /v1/gate/authorize", {
        userId: chat.userId,
        requestId: chat.requestId,
        model: chat.model,
        inputTokens: chat.inputTokens,
        maxOutputTokens: chat.maxOutputTokens,
      }),
      `authorize ${chat.userId}/${chat.requestId}`,
    );
    if (json.reserved !== reservedOf(chat)) surprises.push(`authorize ${chat.requestId}: reserved ${json.reserved} != ${reservedOf(chat)}`);
    return json.holdId as string;
  }

  const settle = (chat: Chat, holdId: string, output = chat.usedOutput) =>
    call("POST /v1/gate/settle", { holdId, inputTokens: chat.usedInput, outputTokens: output });
  const release = (holdId: string) => call("POST /v1/gate/release", { holdId });

  function expectSettled(chat: Chat, answer: Answer, what: string) {
    const json = ok(answer, what);
    const cost = modelCost(chat.model, chat.usedInput, chat.usedOutput);
    const released = chat.kind === "abandoned" ? 0 : Math.max(0, reservedOf(chat) - cost);
    if (json.status !== "settled" || json.charged !== cost || json.released !== released) {
      surprises.push(`${what} ${chat.userId}/${chat.requestId}: ${JSON.stringify(json)}, expected settled ${cost}/${released}`);
    }
  }

  /** A settle sent with a forged hold id: nothing, or exactly what the real hold's settle is. */
  async function expectForgedSettle(chat: Chat, holdId: string, what: string) {
    if (!chat.forged) return;
    counts.forged = (counts.forged ?? 0) + 1;
    const answer = await settle(chat, forgeHoldId(holdId, chat.forged));
    if (answer.status === 404 && answer.json?.error?.code === "NOT_FOUND") return;
    expectSettled(chat, answer, `${what} with a forged ${chat.forged}`);
  }

  function expectReleased(chat: Chat, answer: Answer, what: string, status: "released" | "expired" = "released") {
    const json = ok(answer, what);
    if (json.status !== status || json.charged !== 0 || json.released !== reservedOf(chat)) {
      surprises.push(`${what} ${chat.userId}/${chat.requestId}: ${JSON.stringify(json)}, expected ${status}`);
    }
  }

  /** Runs a chat's calls in their scripted order (abandoned chats only authorize). */
  async function run(chat: Chat): Promise<void> {
    let holdId: string;
    if (chat.kind === "authorizeConcurrent") {
      counts.duplicates++;
      const [a, b] = await Promise.all([authorize(chat), authorize(chat)]);
      if (a !== b) surprises.push(`concurrent authorize ${chat.requestId}: two holds`);
      holdId = a;
    } else {
      holdId = await authorize(chat);
    }
    chat.holdId = holdId;
    switch (chat.kind) {
      case "settle":
      case "overage":
      case "authorizeConcurrent":
        expectSettled(chat, await settle(chat, holdId), "settle");
        return;
      case "authorizeRetried":
        counts.duplicates++;
        if ((await authorize(chat)) !== holdId) surprises.push(`retried authorize ${chat.requestId}: another hold`);
        expectSettled(chat, await settle(chat, holdId), "settle");
        return;
      case "settleRetried":
        counts.duplicates++;
        expectSettled(chat, await settle(chat, holdId), "settle");
        // the retry reports other usage: the first outcome stands
        expectSettled(chat, await settle(chat, holdId, chat.usedOutput + 7), "settle retried");
        return;
      case "settleConcurrent": {
        counts.duplicates++;
        const answers = await Promise.all([settle(chat, holdId), settle(chat, holdId)]);
        for (const answer of answers) expectSettled(chat, answer, "settle (concurrent copy)");
        return;
      }
      case "release":
        expectReleased(chat, await release(holdId), "release");
        return;
      case "releaseAfterSettle":
        counts.reordered++;
        expectSettled(chat, await settle(chat, holdId), "settle");
        expectSettled(chat, await release(holdId), "release after settle");
        return;
      case "settleAfterRelease":
        counts.reordered++;
        expectReleased(chat, await release(holdId), "release");
        expectReleased(chat, await settle(chat, holdId), "settle after release");
        return;
      case "releaseConcurrent": {
        counts.duplicates++;
        const answers = await Promise.all([release(holdId), release(holdId)]);
        for (const answer of answers) expectReleased(chat, answer, "release (concurrent copy)");
        return;
      }
      case "forgedSettle":
        await expectForgedSettle(chat, holdId, "settle");
        expectSettled(chat, await settle(chat, holdId), "settle after a forged one");
        return;
      case "abandoned":
        return; // the sweep expires it
    }
  }

  /** After the sweep expired an abandoned chat's hold: the backend comes back (or not). */
  async function runLate(chat: Chat): Promise<void> {
    if (!chat.holdId || chat.after === "nothing" || chat.after === undefined) return;
    counts.reordered++;
    if (chat.after === "lateSettle") {
      await expectForgedSettle(chat, chat.holdId, "late settle");
      expectSettled(chat, await settle(chat, chat.holdId), "late settle");
    }
    else expectReleased(chat, await release(chat.holdId), "late release", "expired");
  }

  return { run, runLate };
}
