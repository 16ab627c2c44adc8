import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  root: fileURLToPath(new URL("..", import.meta.url)),
  test: {
    include: ["test/**/*.test.ts"],
    // the second one collects the reliability suite's results (see test/reliability/write-readme-table.ts)
    globalSetup: ["test/global-setup.ts", "test/reliability/global-setup.ts"],
    // DynamoDB Local is one JVM on a 2-core machine: a few files at a time keeps it responsive.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
