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
          // Per-connection open/close lines, which some tests read (production's default is info).
          LOG_LEVEL: "debug",
          // Per-user caps small enough to reach below the room's.
          MAX_CONNECTIONS_PER_USER: "3",
          REPLAY_BYTES_PER_USER_PER_MINUTE: "1048576",
          // Short, so that a leave is announced soon after a close; the grace itself is tested.
          PRESENCE_GRACE_MS: "300",
        },
        ratelimits: {
          // The suite connects hundreds of times from "no IP"; the shipped limit is tested with a
          // strict twin (test/connect-limit.test.ts) and end to end (test/e2e/gate.e2e.ts).
          CONNECT_LIMITER: { namespace_id: "1001", simple: { limit: 1_000_000, period: 60 } },
          CONNECT_LIMITER_STRICT: { namespace_id: "1002", simple: { limit: 3, period: 60 } },
        },
      },
    }),
  ],
  test: {
    include: ["test/**/*.test.ts"],
    setupFiles: ["test/setup.ts"],
    exclude: ["test/e2e/**", "test/shard/**", "test/shard-no-history/**"],
    testTimeout: 20_000,
    silent: "passed-only",
  },
});
