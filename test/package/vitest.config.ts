// The package test: packs the repo, installs the tarball into a scratch consumer project and uses it
// there as a team would (tsc, plain Node, esbuild). `npm run test:package`.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    root: fileURLToPath(new URL("../..", import.meta.url)),
    include: ["test/package/**/*.spec.ts"],
    environment: "node",
    testTimeout: 120_000,
    hookTimeout: 240_000,
    teardownTimeout: 30_000,
  },
});
