// The client SDK's tests, in Node against a real `wrangler dev` (see global-setup.ts).
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    root: fileURLToPath(new URL("../..", import.meta.url)),
    include: ["test/client/**/*.spec.ts"],
    environment: "node",
    globalSetup: ["test/client/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 90_000,
    teardownTimeout: 30_000,
    // One server: files one after another, so timing assertions are not squeezed by each other.
    fileParallelism: false,
  },
});
