import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// The secret the workerd tests sign tokens with (test only; test/helpers.ts has the same).
const TEST_JWT_SECRET = "edge-rooms-test-secret-0123456789-abcdefghij";

export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: "./wrangler.toml" },
      miniflare: {
        bindings: {
          JWT_SECRET: TEST_JWT_SECRET,
          ALLOWED_ORIGINS: "https://app.example.com, http://localhost:8787",
          // Small enough for tests to reach: a full room, a trimmed history, a client behind.
          MAX_CONNECTIONS_PER_ROOM: "5",
          HISTORY_LIMIT: "20",
          MAX_UNREAD_BYTES: "1048576",
        },
      },
    }),
  ],
  test: {
    include: ["test/**/*.test.ts"],
    exclude: ["test/e2e/**"],
    testTimeout: 20_000,
    silent: "passed-only",
  },
});
