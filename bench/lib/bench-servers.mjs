/**
 * The servers under test (bench/README.md, "The servers under test"): how each is started (config,
 * vars) and reached (path, token). edge-rooms' vars lift the limits the bench is not measuring: the
 * message rate limit only when a step asks more of a client than the default, the room size only past
 * 1000. Every client is its own user (`u<i>`), with one socket per room.
 */
import { Tokens } from "./tokens.mjs";

/**
 * @param {ReturnType<typeof import("./bench-options.mjs").benchOptions>["options"]} options
 * @param {string | undefined} edgeConfig `--edge-config`.
 */
export function benchServers(options, edgeConfig) {
  const tokens = new Tokens();
  const maxRate = Math.max(...options.fanout.flatMap((f) => [f.maxRate ?? 0, ...(f.rates ?? [])]), 1);
  const maxPerRoom = Math.max(
    Math.ceil(options.stormN / options.stormRooms),
    Math.ceil(options.idleN / options.idleRooms),
    ...options.fanout.map((f) => f.clients),
    // The warm-up room.
    10,
  );
  /** @type {Record<string, string>} */
  const edgeVars = { JWT_SECRET: tokens.secret };
  // The fan-out measures the message path, not the limiter: lift the default 20 msg/s (burst 40) only
  // when a step asks more of a client than that.
  if (maxRate > 20) {
    const burst = Math.ceil(maxRate * 4);
    edgeVars.RATE_LIMIT_PER_SECOND = String(Math.ceil(maxRate * 2));
    edgeVars.RATE_LIMIT_BURST = String(burst);
    // Four unread budgets must hold one sender's full burst of the largest frames (64 KiB).
    const unread = Math.max(16 * 1024 * 1024, burst * 16_384);
    edgeVars.MAX_UNREAD_BYTES = String(unread);
    // The room's queued-byte budget must be at least two unread budgets (config refuses less).
    if (2 * unread > 64 * 1024 * 1024) edgeVars.ROOM_MAX_QUEUED_BYTES = String(2 * unread);
    // The per-user bucket (issue 10) follows RATE_LIMIT_* by default; said explicitly so that the bench
    // keeps measuring the message path if that default changes. Every bench client is its own user
    // (token u<i>, one socket per user per room), so MAX_CONNECTIONS_PER_USER and
    // CONNECTS_PER_USER_PER_MINUTE never bind, and the per-IP CONNECT_LIMITER is raised in the snapshot.
    edgeVars.USER_RATE_LIMIT_PER_SECOND = edgeVars.RATE_LIMIT_PER_SECOND;
    edgeVars.USER_RATE_LIMIT_BURST = edgeVars.RATE_LIMIT_BURST;
  }
  if (maxPerRoom > 1000) edgeVars.MAX_CONNECTIONS_PER_ROOM = String(maxPerRoom);

  const SPECS = {
    // edge-rooms' clients ask for batch frames, as the shipped client does.
    "edge-rooms": {
      config: edgeConfig,
      vars: edgeVars,
      path: (/** @type {string} */ room) => `/ws/chat/${room}?batch=1`,
    },
    // The same snapshot and vars, its own wrangler dev, clients that do not ask for batch frames (v1).
    "edge-rooms-v1": {
      config: edgeConfig,
      vars: edgeVars,
      path: (/** @type {string} */ room) => `/ws/chat/${room}`,
    },
    ceiling: { config: "bench/ceiling/wrangler.toml", vars: {}, path: (/** @type {string} */ room) => `/ws/${room}` },
    peer: {
      config: "bench/peer/wrangler.toml",
      vars: {},
      path: (/** @type {string} */ room) => `/parties/chat/${room}`,
    },
    // edge-rooms as of --baseline, from its own snapshot (see below).
    baseline: {
      config: undefined,
      vars: edgeVars,
      path: (/** @type {string} */ room) => `/ws/chat/${room}?batch=1`,
    },
  };
  /** Servers that are edge-rooms, and so need a token. */
  const EDGE = new Set(["edge-rooms", "edge-rooms-v1", "baseline"]);

  /** One token per client index, minted before anything is timed. */
  const tokenCount = Math.max(options.stormN, options.idleN, ...options.fanout.map((f) => f.rooms * f.clients), 10);
  const clientTokens = tokens.clients(tokenCount);

  /** @param {import("./wrangler.mjs").RunningServer} server */
  function targetOf(server) {
    const spec = SPECS[/** @type {keyof typeof SPECS} */ (server.name)];
    const wsBase = server.baseUrl.replace(/^http/, "ws");
    return {
      name: server.name,
      url: (/** @type {string} */ room) => `${wsBase}${spec.path(room)}`,
      headers: (/** @type {number} */ i) =>
        EDGE.has(server.name) ? { Authorization: `Bearer ${clientTokens[i % clientTokens.length]}` } : undefined,
    };
  }

  return { edgeVars, specs: SPECS, targetOf };
}
