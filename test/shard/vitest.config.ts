import { fileURLToPath } from "node:url";
import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// Sharded rooms (docs/scaling.md) with thresholds small enough for tests: a room grows to a second
// object at 3 sockets and to a third at 6, and shrinks back by one after 1.5 s at or under half of
// the level below (longer than a shard's report takes under load, so that a room does not shrink
// while its moved members reconnect and their shard reports them). Apart from the root config, so that no other test's room is ever sharded (their
// defaults stay those of a small room).
const TEST_JWT_SECRET = "edge-rooms-test-secret-0123456789-abcdefghij";

export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: fileURLToPath(new URL("../../wrangler.toml", import.meta.url)) },
      miniflare: {
        bindings: {
          JWT_SECRET: TEST_JWT_SECRET,
          MAX_CONNECTIONS_PER_ROOM: "20",
          HISTORY_LIMIT: "50",
          LOG_LEVEL: "debug",
          PRESENCE_GRACE_MS: "100",
          SHARD_MAX: "4",
          SHARD_GROW_AT: "3",
          SHARD_MOVES_PER_SECOND: "1000",
          SHARD_SHRINK_AFTER_MS: "1500",
        },
        ratelimits: {
          CONNECT_LIMITER: { namespace_id: "1001", simple: { limit: 1_000_000, period: 60 } },
        },
      },
    }),
  ],
  test: {
    include: ["test/shard/**/*.test.ts"],
    root: fileURLToPath(new URL("../..", import.meta.url)),
    setupFiles: ["test/setup.ts"],
    testTimeout: 30_000,
    silent: "passed-only",
  },
});
