import { type DynamoDBClient, TransactionCanceledException } from "@aws-sdk/client-dynamodb";
import { useFixture } from "./fixture.js";

type Fault = "throttle" | "conflict" | "lostResponse";

/**
 * Fails a request the way DynamoDB would; a lost response sends the request first. A conflict is
 * what DynamoDB answers for each kind of request: a transaction is cancelled with a
 * `TransactionConflict` reason, a single-item write gets TransactionConflictException.
 */
async function raise(fault: Fault, command: string | undefined, send: () => Promise<unknown>): Promise<never> {
  if (fault === "lostResponse") {
    await send();
    throw Object.assign(new Error("socket hang up after the write"), { name: "TimeoutError" });
  }
  if (fault === "throttle") {
    throw Object.assign(new Error("Rate of requests exceeds the allowed throughput"), { name: "ThrottlingException" });
  }
  if (command === "TransactWriteItemsCommand") {
    throw new TransactionCanceledException({
      message: "Transaction cancelled, please refer cancellation reasons for specific reasons [None, TransactionConflict]",
      $metadata: {},
      CancellationReasons: [{ Code: "None" }, { Code: "TransactionConflict", Message: "Transaction is ongoing for the item" }],
    });
  }
  throw Object.assign(new Error("Transaction is ongoing for the item"), { name: "TransactionConflictException" });
}

/**
 * Injects DynamoDB faults above the SDK's own retries, so they reach our code as they would after
 * the SDK gave up: throttling, a transaction conflict, or a write that was applied but whose
 * answer was lost (the worst case for double-applying).
 */
export function injectFaults(client: DynamoDBClient) {
  const plan: { command: string; fault: Fault }[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const index = plan.findIndex((entry) => entry.command === context.commandName);
      if (index < 0) return next(args);
      const [{ fault }] = plan.splice(index, 1) as [{ command: string; fault: Fault }];
      return raise(fault, context.commandName, () => next(args));
    },
    { step: "initialize", name: "injectFaults" },
  );
  return {
    next(command: string, fault: Fault, times = 1) {
      for (let i = 0; i < times; i++) plan.push({ command, fault });
    },
    pending: () => plan.length,
  };
}

/** `injectFaults` on a fixture's client, once its `beforeAll` made it (declare it after the fixture). */
export const useFaults = (fx: { client: DynamoDBClient }) => useFixture("useFaults", async () => injectFaults(fx.client));

export type FaultKind = Fault;

const WRITE_COMMANDS = /^(PutItem|UpdateItem|DeleteItem|TransactWriteItems|BatchWriteItem)Command$/;

/**
 * Random faults on a share of all requests while enabled: reads are throttled; writes are
 * throttled, conflicted, or applied with their answer lost (a timeout after the write). Like
 * `injectFaults`, above the SDK's own retries. `counts` says what was injected.
 */
export function injectRandomFaults(client: DynamoDBClient, options: { rate: number; random: () => number }) {
  const counts: Record<Fault, number> = { throttle: 0, conflict: 0, lostResponse: 0 };
  const state = { enabled: false };
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (!state.enabled || options.random() >= options.rate) return next(args);
      const write = WRITE_COMMANDS.test(context.commandName ?? "");
      const roll = options.random();
      const fault: Fault = !write || roll < 0.4 ? "throttle" : roll < 0.7 ? "conflict" : "lostResponse";
      counts[fault]++;
      return raise(fault, context.commandName, () => next(args));
    },
    { step: "initialize", name: `injectRandomFaults-${Math.random().toString(36).slice(2)}` },
  );
  return {
    counts,
    enable: () => {
      state.enabled = true;
    },
    disable: () => {
      state.enabled = false;
    },
  };
}
