/**
 * A vitest config for one more pool of workerd tests with its own settings (src/common/config.ts):
 * a setting that changes every room (sharding, the roster mode, no history) gets its own pool, so
 * that no other test's room runs under it. Each pool runs the worker of wrangler.toml with the
 * test secret (test/helpers.ts signs with the same) and no per-IP connect limit.
 */
import { fileURLToPath } from "node:url";
import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

const TEST_JWT_SECRET = "edge-rooms-test-secret-0123456789-abcdefghij";

/**
 * Sharded rooms with thresholds small enough for tests: a room grows to a second object at 3
 * sockets and to a third at 6, and shrinks back by one after 1.5 s at or under half of the level
 * below (longer than a shard's report takes under load, so that a room does not shrink while its
 * moved members reconnect and their shard reports them).
 */
export const SHARD_BINDINGS = {
  MAX_CONNECTIONS_PER_ROOM: "20",
  HISTORY_LIMIT: "50",
  SHARD_MAX: "4",
  SHARD_GROW_AT: "3",
  SHARD_MOVES_PER_SECOND: "1000",
  SHARD_SHRINK_AFTER_MS: "1500",
};

/** The pool of `test/<dir>/**\/*.test.ts`, with `bindings` over the defaults. */
export function poolConfig(dir: string, bindings: Record<string, string>) {
  return defineConfig({
    plugins: [
      cloudflareTest({
        wrangler: { configPath: fileURLToPath(new URL("../../wrangler.toml", import.meta.url)) },
        miniflare: {
          bindings: { JWT_SECRET: TEST_JWT_SECRET, LOG_LEVEL: "debug", PRESENCE_GRACE_MS: "100", ...bindings },
          ratelimits: {
            CONNECT_LIMITER: { namespace_id: "1001", simple: { limit: 1_000_000, period: 60 } },
          },
        },
      }),
    ],
    test: {
      include: [`test/${dir}/**/*.test.ts`],
      root: fileURLToPath(new URL("../..", import.meta.url)),
      setupFiles: ["test/setup.ts"],
      testTimeout: 30_000,
      silent: "passed-only",
    },
  });
}
