// End-to-end tests: plain Node vitest (not the Workers pool) against a real `wrangler dev` server that
// test/e2e/wrangler-dev.ts starts once for the whole run. `npm run test:e2e`.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // Paths below are relative to the repo root, wherever vitest is started from.
    root: fileURLToPath(new URL("../..", import.meta.url)),
    include: ["test/e2e/**/*.e2e.ts"],
    environment: "node",
    globalSetup: ["test/e2e/wrangler-dev.ts"],
    testTimeout: 300_000,
    hookTimeout: 90_000,
    // Covers stopping wrangler (SIGTERM, then SIGKILL after a few seconds) in the global teardown.
    teardownTimeout: 30_000,
    // One server, one file: no benefit in parallel files, and serial output is easier to read.
    fileParallelism: false,
  },
});
