import { afterEach, beforeEach, vi } from "vitest";

/**
 * Captures the JSON log lines the Powertools logger writes to stdout and stderr during each test (which also
 * keeps them out of the test output). Call once at the top of a test file.
 */
export function captureLogs(): { lines(): Record<string, unknown>[] } {
  let captured: string[] = [];
  beforeEach(() => {
    captured = [];
    // errors and warnings go to stderr, the rest to stdout
    for (const stream of [process.stdout, process.stderr]) {
      const write = stream.write.bind(stream);
      vi.spyOn(stream, "write").mockImplementation(((chunk: unknown, ...rest: unknown[]) => {
        const text = String(chunk);
        if (text.startsWith("{")) {
          captured.push(...text.split("\n").filter(Boolean));
          return true;
        }
        return (write as (...args: unknown[]) => boolean)(chunk, ...rest);
      }) as typeof stream.write);
    }
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });
  return { lines: () => captured.map((line) => JSON.parse(line) as Record<string, unknown>) };
}
