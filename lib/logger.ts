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
 * Children not in use. An invocation takes one and gives it back when it ends, so a warm Lambda (one
 * invocation at a time) builds one child in its life rather than one per call: `createChild` costs
 * about 80 µs, on the proxy's path to the first token. A child taken again is cleared of the keys
 * its last invocation appended and given the base's level (set after it was built, say by a test).
 */
const idleChildren: Logger[] = [];

/**
 * Runs one invocation with a logger of its own, labelled with the function's context as Lambda
 * would label it (function_name, function_arn, function_request_id).
 */
export function withInvocationLogger<T>(context: Context, run: () => T): T {
  const child = idleChildren.pop() ?? base.createChild();
  child.resetKeys();
  if (child.getLevelName() !== base.getLevelName()) child.setLogLevel(base.getLevelName());
  child.addContext(context);
  const giveBack = () => {
    idleChildren.push(child);
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
