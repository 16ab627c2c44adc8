import { AsyncLocalStorage } from "node:async_hooks";
import { Logger } from "@aws-lambda-powertools/logger";
import type { Context } from "aws-lambda";

const base = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? "creditgate" });
const invocationLogger = new AsyncLocalStorage<Logger>();

/**
 * The one structured JSON logger of a function. The HTTP stack (lib/http/logging) stamps every
 * line of a request with its request ids; POWERTOOLS_LOG_LEVEL sets the level.
 *
 * In Lambda a process is one function running one invocation at a time, so this is simply the
 * module's logger. `npm start` runs every function in one process, concurrently: there each
 * invocation runs inside `withInvocationLogger`, and `logger` resolves to that invocation's own
 * child, so one function's name, request ids and keys never label another function's lines.
 */
export const logger: Logger = new Proxy(base, {
  get(target, property) {
    const current = invocationLogger.getStore() ?? target;
    const value = Reflect.get(current, property, current);
    // bound to the real instance: Logger keeps its state in #private fields a proxy cannot reach
    return typeof value === "function" ? value.bind(current) : value;
  },
});

/**
 * Children free to serve another invocation of a function that asked for reuse. Building a child
 * (`createChild`) costs about 80 µs, on the proxy's path to the first token; a warm proxy Lambda
 * (one invocation at a time) now builds one in its life. Only an invocation that awaits all it
 * starts may give its child back: work left running after the answer (a middy early timeout's
 * handler, still calling Stripe) would log through the child under the next invocation's labels.
 * A child taken again is cleared of its last invocation's keys, given the base's level (set after
 * it was built, say by a test) and its debug sampling rolled again, as a new child's is.
 */
const reusableChildren: Logger[] = [];

/**
 * Runs one invocation with a logger of its own, labelled with the function's context as Lambda
 * would label it (function_name, function_arn, function_request_id). `reuse`: the invocation
 * leaves nothing running when it ends (see above), so its child may serve a later one.
 */
export function withInvocationLogger<T>(context: Context, run: () => T, options: { reuse?: boolean } = {}): T {
  const reused = options.reuse ? reusableChildren.pop() : undefined;
  const child = reused ?? base.createChild();
  if (reused) {
    reused.resetKeys();
    // sampling first: a child it picks logs at DEBUG, any other at the base's level (the roll
    // restores the level the child was built with, perhaps not the base's any more)
    reused.refreshSampleRateCalculation();
    if (reused.getLevelName() !== "DEBUG") reused.setLogLevel(base.getLevelName());
  }
  child.addContext(context);
  if (!options.reuse) return invocationLogger.run(child, run);
  const giveBack = () => {
    reusableChildren.push(child);
  };
  let result: T;
  try {
    result = invocationLogger.run(child, run);
  } catch (error) {
    giveBack();
    throw error;
  }
  if (result instanceof Promise) return result.finally(giveBack) as T;
  giveBack();
  return result;
}
