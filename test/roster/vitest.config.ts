import { fileURLToPath } from "node:url";
import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// Rooms of one object with a roster setting small enough to cross (src/room/roster-mode.ts): counts
// only above 3 users, the roster again at 2 or fewer. Apart from the root config, whose rooms keep the
// default (their presence tests hold up to 5 users with the full roster).
const TEST_JWT_SECRET = "edge-rooms-test-secret-0123456789-abcdefghij";

export default defineConfig({
  plugins: [
    cloudflareTest({
      wrangler: { configPath: fileURLToPath(new URL("../../wrangler.toml", import.meta.url)) },
      miniflare: {
        bindings: {
          JWT_SECRET: TEST_JWT_SECRET,
          MAX_CONNECTIONS_PER_ROOM: "20",
          LOG_LEVEL: "debug",
          PRESENCE_GRACE_MS: "100",
          PRESENCE_ROSTER_MAX: "3",
        },
        ratelimits: {
          CONNECT_LIMITER: { namespace_id: "1001", simple: { limit: 1_000_000, period: 60 } },
        },
      },
    }),
  ],
  test: {
    include: ["test/roster/**/*.test.ts"],
    root: fileURLToPath(new URL("../..", import.meta.url)),
    setupFiles: ["test/setup.ts"],
    testTimeout: 30_000,
    silent: "passed-only",
  },
});
