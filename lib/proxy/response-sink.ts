/**
 * Where the proxy writes its answer, as it goes: Lambda's response stream behind a Function URL
 * (functions/chat-proxy.ts) or a Node HTTP response locally (infra/local/proxy-server.ts). A port,
 * so the use case is the same in both and in tests.
 */
export interface ResponseSink {
  /** Sets the status and headers, which leave with the first write at the latest; called once, before it. */
  start(status: number, headers: Record<string, string>): void;
  /**
   * Sends a piece of the body. Undefined when the sink may take more at once; else a promise that
   * resolves when it may (or the client is gone). A relayed stream writes once per upstream read,
   * and most writes do not wait: they cost no promise and no deadline race.
   */
  write(text: string): Promise<void> | undefined;
  /** Ends the body. */
  end(): Promise<void>;
  /** True once the client went away: writes are dropped from then on. */
  readonly clientGone: boolean;
}

/** A whole JSON answer on a sink. */
export async function sendJson(sink: ResponseSink, status: number, body: unknown, headers: Record<string, string> = {}): Promise<void> {
  sink.start(status, { "content-type": "application/json", "cache-control": "no-store", ...headers });
  await sink.write(JSON.stringify(body));
  await sink.end();
}

/**
 * Whether `write` finished before `signal` aborted (the call's deadline). The abort listener lives
 * only as long as the write: one promise raced by every write of a stream would keep a reaction per
 * write alive until the deadline, minutes after the call ended (an outside review measured about
 * 300 bytes a write).
 */
export async function writtenBeforeDeadline(write: Promise<void>, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  let stop = () => {};
  const aborted = new Promise<false>((resolve) => {
    stop = () => resolve(false);
    signal.addEventListener("abort", stop, { once: true });
  });
  try {
    return await Promise.race([write.then(() => true as const), aborted]);
  } finally {
    signal.removeEventListener("abort", stop);
  }
}
