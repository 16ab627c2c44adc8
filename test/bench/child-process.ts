import { type ChildProcess, spawn } from "node:child_process";

/**
 * The proxy section's processes (test/bench/proxy-rig.ts): the provider stand-in and the proxy
 * server each run in a child of the bench, as the proxy runs in its own Lambda in production. A
 * child is started with one JSON argument, prints one JSON line on stdout once it listens, and
 * exits on SIGTERM, SIGINT or when its stdin closes (so a bench that dies cannot orphan it).
 */

/** ms on the machine's monotonic clock (CLOCK_MONOTONIC): comparable across the bench's processes. */
export const monotonicMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** Child side: print what the parent waits for, as one JSON line. */
export function announce(info: object): void {
  process.stdout.write(`${JSON.stringify(info)}\n`);
}

/** Child side: run `close` and exit on SIGTERM, SIGINT or the end of stdin (the parent went away). */
export function exitWhenTold(close: () => Promise<void>): void {
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(0), 3_000).unref();
    close().finally(() => process.exit(0));
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  process.stdin.once("end", stop);
  process.stdin.once("close", stop);
  process.stdin.resume();
}

export interface Child<T> {
  info: T;
  process: ChildProcess;
  /** SIGTERM, then SIGKILL after 5 s; resolves once the process has exited */
  stop(): Promise<void>;
}

const exited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null;

async function stopChild(child: ChildProcess): Promise<void> {
  if (exited(child)) return;
  const gone = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  if ((await Promise.race([gone, new Promise((resolve) => setTimeout(resolve, 5_000, "timeout"))])) === "timeout") {
    child.kill("SIGKILL");
    await gone;
  }
}

/**
 * Parent side: `node --import tsx script '<config as JSON>'` (this Node, as npm runs it), resolved
 * with the JSON line it prints once it listens. Its stderr is the bench's; whatever else it prints
 * on stdout goes to the bench's stderr. Killed if it does not announce itself within `timeoutMs`.
 */
export async function startChild<T>(script: string, config: unknown, what: string, timeoutMs = 60_000): Promise<Child<T>> {
  const child = spawn(process.execPath, ["--import", "tsx", script, JSON.stringify(config)], { stdio: ["pipe", "pipe", "inherit"], env: process.env });
  // a bench that exits without stopping it (an uncaught error) still takes it along
  const onExit = () => {
    if (!exited(child)) child.kill("SIGKILL");
  };
  process.once("exit", onExit);
  child.once("exit", () => process.off("exit", onExit));
  try {
    const info = await new Promise<T>((resolve, reject) => {
      let buffer = "";
      let announced = false;
      const timer = setTimeout(() => reject(new Error(`${what} did not start within ${timeoutMs} ms`)), timeoutMs);
      child.once("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        if (!announced) reject(new Error(`${what} exited (${code ?? signal}) before it listened`));
      });
      child.stdout?.on("data", (chunk: Buffer) => {
        if (announced) {
          process.stderr.write(chunk);
          return;
        }
        buffer += chunk.toString("utf8");
        const newline = buffer.indexOf("\n");
        if (newline < 0) return;
        announced = true;
        clearTimeout(timer);
        const rest = buffer.slice(newline + 1);
        if (rest) process.stderr.write(rest);
        try {
          resolve(JSON.parse(buffer.slice(0, newline)) as T);
        } catch {
          reject(new Error(`${what} printed ${buffer.slice(0, newline)} instead of one JSON line`));
        }
      });
    });
    return { info, process: child, stop: () => stopChild(child) };
  } catch (error) {
    await stopChild(child);
    throw error;
  }
}
