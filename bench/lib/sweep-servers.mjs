/**
 * The sweep's servers (bench/README.md, "Room-size sweep"): edge-rooms' vars for one object
 * ("single") or a room spread over `--shards` objects ("sharded"), with the limits the sweep is not
 * measuring lifted and the usage counters on; starting one from the snapshot; a room of N sockets on
 * it; and what the server says (its usage counters, how many objects a room is spread over).
 */
import { SweepRoom } from "./sweep-room.mjs";
import { Tokens } from "./tokens.mjs";
import { startServer } from "./wrangler.mjs";

/**
 * @param {object} o
 * @param {ReturnType<typeof import("./sweep-options.mjs").sweepOptions>["options"]} o.options
 * @param {string} o.snapshot The repo's copy the servers run from.
 * @param {boolean} o.pinned
 * @param {boolean} o.verbose
 * @param {(line: string) => void} o.log
 */
export function sweepServers({ options, snapshot, pinned, verbose, log }) {
  const tokens = new Tokens();
  const maxSize = Math.max(...options.sizes, options.senders + options.ordererListeners);
  const clientTokens = tokens.clients(maxSize);
  const adminToken = tokens.sign({ sub: "bench-admin", role: "admin" });
  const maxSenderRate = Math.max(
    ...options.sizes.map((n) => options.deliveries / n / options.senders),
    options.ordererRate / options.senders,
  );
  /** @type {Record<string, string>} */
  const baseVars = { JWT_SECRET: tokens.secret, USAGE_STATS: "true" };
  {
    const perSecond = Math.max(20, Math.ceil(maxSenderRate * 2));
    const burst = perSecond * 2;
    baseVars.RATE_LIMIT_PER_SECOND = String(perSecond);
    baseVars.RATE_LIMIT_BURST = String(burst);
    baseVars.USER_RATE_LIMIT_PER_SECOND = String(perSecond);
    baseVars.USER_RATE_LIMIT_BURST = String(burst);
    const unread = Math.max(16 * 1024 * 1024, burst * 16_384);
    baseVars.MAX_UNREAD_BYTES = String(unread);
    if (2 * unread > 64 * 1024 * 1024) baseVars.ROOM_MAX_QUEUED_BYTES = String(2 * unread);
  }
  const maxConnections = String(Math.min(32_768, Math.max(1000, maxSize + 16)));

  /**
   * The vars of a server: single holds every size in one object; sharded spreads a room of `size` over
   * `--shards` objects (SHARD_GROW_AT = size ÷ shards) and never shrinks during the sweep.
   * @param {"single" | "sharded"} mode @param {number} size
   */
  function edgeVars(mode, size) {
    /** @type {Record<string, string>} */
    const vars = { ...baseVars, MAX_CONNECTIONS_PER_ROOM: maxConnections };
    if (mode === "sharded") {
      vars.SHARD_MAX = String(options.shards);
      vars.SHARD_GROW_AT = String(Math.max(1, Math.floor(size / options.shards)));
      vars.SHARD_MOVES_PER_SECOND = "10000";
      vars.SHARD_SHRINK_AFTER_MS = "3600000";
    }
    return vars;
  }

  /** @param {string} name @param {Record<string, string>} vars @param {string | undefined} config */
  async function start(name, vars, config) {
    const server = await startServer({
      name,
      root: snapshot,
      config,
      vars,
      cpus: pinned ? { server: "1", tools: "0" } : undefined,
      direct: true,
      echo: verbose,
    });
    log(`  ${name}: ${server.baseUrl} (${server.via}), runtime pid ${server.runtimePid}`);
    return server;
  }

  /**
   * @param {import("./wrangler.mjs").RunningServer} server @param {string} room @param {number} n
   */
  function roomOf(server, room, n, edge = true) {
    const ws = server.baseUrl.replace(/^http/, "ws");
    return new SweepRoom({
      url: () => (edge ? `${ws}/ws/chat/${room}?batch=1` : `${ws}/ws/${room}`),
      headers: (i) => (edge ? { Authorization: `Bearer ${clientTokens[i]}` } : undefined),
      n,
      senders: options.senders,
    });
  }

  /** The server's counters (zeroed as they are read); undefined for a server without them. */
  function usageOf(/** @type {import("./wrangler.mjs").RunningServer} */ server, edge = true) {
    return async () => {
      if (!edge) return undefined;
      try {
        const r = await fetch(`${server.baseUrl}/__usage?reset=1`, { signal: AbortSignal.timeout(5_000) });
        return r.ok ? /** @type {Record<string, number>} */ (await r.json()) : undefined;
      } catch {
        return undefined;
      }
    };
  }

  /** How many objects the room is spread over (the admin API's `shards`; 1 when absent). */
  async function objectsOf(/** @type {import("./wrangler.mjs").RunningServer} */ server, /** @type {string} */ room) {
    try {
      const r = await fetch(`${server.baseUrl}/api/rooms/${room}`, {
        headers: { Authorization: `Bearer ${adminToken}` },
        signal: AbortSignal.timeout(5_000),
      });
      const body = /** @type {{ shards?: number }} */ (await r.json());
      return body.shards ?? 1;
    } catch {
      return Number.NaN;
    }
  }

  return { baseVars, edgeVars, start, roomOf, usageOf, objectsOf };
}
