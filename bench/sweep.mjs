/**
 * `npm run bench -- --sweep [flags]`: the room-size sweep of issue 14 (bench/README.md, "Room-size
 * sweep"). For each room size, one room of N sockets with a few senders at a fixed rate, on edge-rooms
 * as one object ("single"), edge-rooms spread over several objects ("sharded") and the ceiling;
 * then the per-message cost of ordering (the "orderer" phase) and the cost model. Writes
 * bench/results/sweep-<timestamp>.json and bench/results/sweep.md.
 *
 * Only 127.0.0.1 is contacted; every server started here is stopped on the way out.
 */
import { execFileSync } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { costOf } from "./lib/cost-model.mjs";
import { scratchDir, snapshotRepo } from "./lib/snapshots.mjs";
import { sweepMarkdown } from "./lib/sweep-report.mjs";
import { SweepRoom } from "./lib/sweep-room.mjs";
import { killAllGroupsNow, liveDirs, REPO_ROOT, sleep, startServer } from "./lib/wrangler.mjs";

const HELP = `usage: npm run bench -- --sweep [flags]

  --quick               smoke run: sizes 50,500, 3 s steps, modes single,sharded
  --sizes LIST          room sizes, sockets per room (default 50,500,2000,16000)
  --modes LIST          of single,sharded,ceiling (default all three)
  --deliveries N        deliveries/s each size is driven at: room rate = N ÷ size msg/s (default 20000)
  --senders N           sockets that send, spread evenly in time (default 4)
  --seconds S           length of a measured step (default 10)
  --drain-ms MS         longest wait for a step's last deliveries (default 3000)
  --shards N            objects a sharded room spreads over: SHARD_MAX = N, SHARD_GROW_AT = size ÷ N (default 8)
  --orderer-rate R      room msg/s of the orderer phase (default 200)
  --orderer-listeners K listeners added in the orderer phase's second arm (default 64)
  --no-orderer          skip the orderer phase
  --concurrency N       handshakes in flight while a room fills (default 50)
  --fill-seconds S      give up filling a room after this long: the row then says how many sockets it
                        held, and nothing is measured (default 300)
  --max-seconds S       abort (and stop everything) after this long (default 2400)
  --out DIR             where results go (default bench/results)
  --verbose             echo wrangler's output
  --render FILE         no run: the cost model and the tables again from a sweep's JSON (into --out)
`;

const { values: flags } = parseArgs({
  args: process.argv.slice(2).filter((a) => a !== "--sweep"),
  options: {
    help: { type: "boolean" },
    quick: { type: "boolean" },
    sizes: { type: "string" },
    modes: { type: "string" },
    deliveries: { type: "string" },
    senders: { type: "string" },
    seconds: { type: "string" },
    "drain-ms": { type: "string" },
    shards: { type: "string" },
    "orderer-rate": { type: "string" },
    "orderer-listeners": { type: "string" },
    "no-orderer": { type: "boolean" },
    concurrency: { type: "string" },
    "fill-seconds": { type: "string" },
    "max-seconds": { type: "string" },
    out: { type: "string" },
    render: { type: "string" },
    verbose: { type: "boolean" },
  },
});
if (flags.help) {
  process.stdout.write(HELP);
  process.exit(0);
}
if (flags.render !== undefined) {
  const result = JSON.parse(readFileSync(flags.render, "utf8"));
  for (const row of result.rows) {
    if (row.mode === "ceiling") continue;
    row.cost = costOf(row.usage, {
      messages: row.sent,
      heartbeatEchoes: row.heartbeatEchoes,
      framesOut: row.framesOut,
      objects: row.objects,
      roomRate: row.roomRate,
    });
  }
  writeFileSync(flags.render, `${JSON.stringify(result, null, 2)}\n`);
  const table = sweepMarkdown(result);
  writeFileSync(join(flags.out ?? join(REPO_ROOT, "bench", "results"), "sweep.md"), `${table}\n`);
  process.stdout.write(`${table}\n`);
  process.exit(0);
}
/** @param {string} message @returns {never} */
function fail(message) {
  process.stderr.write(`bench --sweep: ${message}\n${HELP}`);
  process.exit(2);
}
/** @param {string | undefined} raw @param {number} fallback @param {string} name */
function num(raw, fallback, name, min = 0) {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) fail(`--${name} must be a number ≥ ${min}`);
  return n;
}
const list = (/** @type {string} */ raw) =>
  raw
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

const quick = flags.quick === true;
const options = {
  quick,
  sizes: list(flags.sizes ?? (quick ? "50,500" : "50,500,2000,16000")).map((s) => num(s, 0, "sizes", 2)),
  modes: list(flags.modes ?? (quick ? "single,sharded" : "single,sharded,ceiling")),
  deliveries: num(flags.deliveries, 20_000, "deliveries", 1),
  senders: num(flags.senders, 4, "senders", 1),
  seconds: num(flags.seconds, quick ? 3 : 10, "seconds", 1),
  drainMs: num(flags["drain-ms"], 3000, "drain-ms", 100),
  shards: num(flags.shards, 8, "shards", 2),
  ordererRate: num(flags["orderer-rate"], 200, "orderer-rate", 1),
  ordererListeners: num(flags["orderer-listeners"], 64, "orderer-listeners", 1),
  orderer: flags["no-orderer"] !== true,
  concurrency: num(flags.concurrency, 50, "concurrency", 1),
  fillSeconds: num(flags["fill-seconds"], 300, "fill-seconds", 1),
  maxSeconds: num(flags["max-seconds"], 2400, "max-seconds", 10),
  out: flags.out ?? join(REPO_ROOT, "bench", "results"),
};
for (const m of options.modes) if (!["single", "sharded", "ceiling"].includes(m)) fail(`unknown mode ${m}`);
for (const n of options.sizes) if (n > 32_000) fail("a size is at most 32000 (one object's sockets, and fds)");
for (const n of options.sizes) if (n < options.senders) fail("every size must hold the senders");

const log = (/** @type {string} */ line) => process.stdout.write(`${line}\n`);

process.on("exit", killAllGroupsNow);
for (const signal of /** @type {const} */ (["SIGINT", "SIGTERM", "SIGHUP"])) {
  process.on(signal, () => {
    killAllGroupsNow();
    process.exit(130);
  });
}
setTimeout(() => {
  process.stderr.write(`\nbench --sweep: still running after ${options.maxSeconds} s; aborting\n`);
  killAllGroupsNow();
  process.exit(3);
}, options.maxSeconds * 1000).unref();

// -- pinning, as the default bench does (bench/README.md, "CPU pinning") ------------------------------

let pinned = false;
try {
  execFileSync("taskset", ["-a", "-p", "-c", "0", String(process.pid)], { stdio: "ignore" });
  pinned = cpus().length >= 2;
} catch {
  pinned = false;
}

// -- tokens: HS256 by hand (16 000 of them with jose would take seconds) -------------------------------

const secret = randomBytes(48).toString("hex");
const b64 = (/** @type {string} */ s) => Buffer.from(s).toString("base64url");
const HEADER = b64(JSON.stringify({ alg: "HS256", typ: "JWT" }));
/** @param {Record<string, unknown>} claims */
function token(claims) {
  const now = Math.floor(Date.now() / 1000);
  const body = b64(JSON.stringify({ iat: now, exp: now + 3 * 3600, ...claims }));
  const sig = createHmac("sha256", secret).update(`${HEADER}.${body}`).digest("base64url");
  return `${HEADER}.${body}.${sig}`;
}
const maxSize = Math.max(...options.sizes, options.senders + options.ordererListeners);
const tokens = Array.from({ length: maxSize }, (_, i) => token({ sub: `u${i}`, name: `user ${i}` }));
const adminToken = token({ sub: "bench-admin", role: "admin" });

// -- servers --------------------------------------------------------------------------------------

const maxSenderRate = Math.max(
  ...options.sizes.map((n) => options.deliveries / n / options.senders),
  options.ordererRate / options.senders,
);
/** @type {Record<string, string>} */
const baseVars = { JWT_SECRET: secret, USAGE_STATS: "true" };
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

const snapshot = join(scratchDir(), `edge-rooms-sweep-src-${process.pid}`);
liveDirs.add(snapshot);
snapshotRepo(snapshot);

/** @param {string} name @param {Record<string, string>} vars @param {string | undefined} config */
async function start(name, vars, config) {
  const server = await startServer({
    name,
    root: snapshot,
    config,
    vars,
    cpus: pinned ? { server: "1", tools: "0" } : undefined,
    direct: true,
    echo: flags.verbose === true,
  });
  log(`  ${name}: ${server.baseUrl} (${server.via}), runtime pid ${server.runtimePid}`);
  return server;
}

/**
 * @param {import("./lib/wrangler.mjs").RunningServer} server @param {string} room @param {number} n
 */
function roomOf(server, room, n, edge = true) {
  const ws = server.baseUrl.replace(/^http/, "ws");
  return new SweepRoom({
    url: () => (edge ? `${ws}/ws/chat/${room}?batch=1` : `${ws}/ws/${room}`),
    headers: (i) => (edge ? { Authorization: `Bearer ${tokens[i]}` } : undefined),
    n,
    senders: options.senders,
  });
}

/** The server's counters (zeroed as they are read); undefined for a server without them. */
function usageOf(/** @type {import("./lib/wrangler.mjs").RunningServer} */ server, edge = true) {
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
async function objectsOf(/** @type {import("./lib/wrangler.mjs").RunningServer} */ server, /** @type {string} */ room) {
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

// -- the sweep ------------------------------------------------------------------------------------

const startedAt = new Date();
const load0 = loadavg();
log(
  `bench --sweep: sizes ${options.sizes.join(", ")}; modes ${options.modes.join(", ")}; ${options.deliveries} deliveries/s; ` +
    `${options.senders} senders; ${options.seconds} s steps; ${pinned ? "client on CPU 0, runtime on CPU 1" : "not pinned"}; ` +
    `load ${load0.map((l) => l.toFixed(2)).join(" ")}`,
);

/** @type {any[]} */
const rows = [];
/** @type {any[]} */
const orderer = [];

/**
 * One size on one running server.
 * @param {import("./lib/wrangler.mjs").RunningServer} server @param {string} mode @param {number} n
 */
async function runSize(server, mode, n) {
  const edge = mode !== "ceiling";
  const room = `sweep-${mode}-${n}-${randomBytes(3).toString("hex")}`;
  const r = roomOf(server, room, n, edge);
  log(`  ${mode} ${n}: opening…`);
  const usage = usageOf(server, edge);
  await usage();
  const opened = await r.open(options.concurrency, options.fillSeconds * 1000);
  const connects = await usage();
  if (!opened.filled) {
    // The room could not be filled in time: record how far it got, measure nothing.
    const rss = server.rss();
    await r.close();
    rows.push({ mode, size: n, objects: Number.NaN, open: opened, notFilled: true, runtimeRssKiB: rss });
    log(
      `    did not fill: ${opened.opened} of ${n} sockets after ${opened.seconds} s; runtime RSS ${Math.round(rss / 1024)} MiB`,
    );
    return;
  }
  const objects = edge ? await objectsOf(server, room) : 1;
  const rate = options.deliveries / n / options.senders;
  // Unmeasured warm-up at the same rate (a cold object's first messages are slow everywhere).
  await r.measure({ rate, seconds: 1, drainMs: options.drainMs, serverCpu: server.cpu, usage: async () => undefined });
  const step = await r.measure({
    rate,
    seconds: options.seconds,
    drainMs: options.drainMs,
    serverCpu: server.cpu,
    usage: usageOf(server, edge),
  });
  await r.close();
  const cost = edge
    ? costOf(step.usage, {
        messages: step.sent,
        heartbeatEchoes: step.heartbeatEchoes,
        framesOut: step.framesOut,
        objects,
        roomRate: step.roomRate,
      })
    : undefined;
  // What filling the room cost, per socket: the Worker's requests (one per connect, moves included) and
  // the objects' (a redirect is one more), RPC calls (attach, report) and rows.
  const perSocket = connects
    ? Object.fromEntries(Object.entries(connects).map(([k, v]) => [k, Math.round((v / n) * 1000) / 1000]))
    : undefined;
  const row = { mode, size: n, objects, open: { ...opened, perSocket }, ...step, cost };
  rows.push(row);
  log(
    `    ${objects} object(s), opened in ${opened.seconds} s (${opened.moved} moved, ${opened.failed} failed); ` +
      `${step.roomRate} msg/s → ${step.deliveredPerSec} deliveries/s, p50 ${step.p50} p99 ${step.p99} ms, ` +
      `lost ${step.lost}, out of order ${step.outOfOrder}; runtime ${step.serverCpuPct}% = ${step.cpuUsPerDelivery} µs/delivery` +
      (cost ? `; $${cost.dollarsPerMillion.total}/M messages` : ""),
  );
  await sleep(500);
}

/**
 * The orderer phase: the runtime's CPU per message with `senders` receivers, then with K listeners
 * more, in the same room (in sharded mode, already spread over its objects); the fan-out part is
 * what the K add, and the rest is the per-message cost (see bench/README.md).
 * @param {import("./lib/wrangler.mjs").RunningServer} server @param {string} mode
 */
async function runOrderer(server, mode) {
  const k = options.ordererListeners;
  const room = `sweep-orderer-${mode}-${randomBytes(3).toString("hex")}`;
  const r = roomOf(server, room, options.senders + k);
  log(`  ${mode} orderer phase: ${options.senders} senders + ${k} listeners…`);
  await r.open(options.concurrency, options.fillSeconds * 1000);
  const objects = await objectsOf(server, room);
  const m = { rate: options.ordererRate / options.senders, seconds: options.seconds, drainMs: options.drainMs };
  const usage = usageOf(server);
  const wide = await r.measure({ ...m, serverCpu: server.cpu, usage });
  await r.close(options.senders, options.senders + k);
  await sleep(1_000);
  const narrow = await r.measure({ ...m, serverCpu: server.cpu, usage });
  await r.close();
  // CPU per message = a + b × receivers; two points give b (per delivery) and a (per message).
  const cpuNarrow = narrow.cpuUsPerMessage;
  const cpuWide = wide.cpuUsPerMessage;
  const perDelivery = (cpuWide - cpuNarrow) / (wide.receivers - narrow.receivers);
  const perMessage = cpuNarrow - perDelivery * narrow.receivers;
  const result = {
    mode,
    objects,
    roomRate: options.ordererRate,
    narrow: {
      receivers: narrow.receivers,
      cpuUsPerMessage: cpuNarrow,
      lost: narrow.lost,
      p99: narrow.p99,
      usage: narrow.usage,
    },
    wide: { receivers: wide.receivers, cpuUsPerMessage: cpuWide, lost: wide.lost, p99: wide.p99, usage: wide.usage },
    perDeliveryUs: Math.round(perDelivery * 100) / 100,
    perMessageUs: Math.round(perMessage * 10) / 10,
    ceilingMsgPerSec: perMessage > 0 ? Math.round(1e6 / perMessage) : Number.NaN,
  };
  orderer.push(result);
  log(
    `    ${objects} object(s); ${narrow.receivers} receivers ${cpuNarrow} µs/msg, ${wide.receivers} receivers ${cpuWide} µs/msg → ` +
      `${result.perDeliveryUs} µs/delivery, ${result.perMessageUs} µs/message fixed → ≤ ${result.ceilingMsgPerSec} msg/s per core`,
  );
}

/** @type {string[]} */
const errors = [];
const stamp = startedAt.toISOString().replace(/[:.]/g, "-");
/** Writes what is measured so far (after every row, so an aborted sweep keeps its rows). */
function save() {
  const result = {
    startedAt: startedAt.toISOString(),
    options,
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      pinned,
      node: process.version,
      loadBefore: load0,
      loadAfter: loadavg(),
      edgeVars: { ...baseVars, JWT_SECRET: "(random)" },
    },
    rows,
    orderer,
    errors,
  };
  mkdirSync(options.out, { recursive: true });
  writeFileSync(join(options.out, `sweep-${stamp}.json`), `${JSON.stringify(result, null, 2)}\n`);
  const table = sweepMarkdown(result);
  writeFileSync(join(options.out, quick ? "sweep-quick.md" : "sweep.md"), `${table}\n`);
  return table;
}

try {
  // Size by size, every mode side by side; a fresh server for each (a sharded room's grow threshold
  // is its size ÷ the shards), so one size's rooms never share a runtime with another's.
  for (const n of options.sizes) {
    for (const mode of options.modes) {
      const edge = mode !== "ceiling";
      const server = await start(
        `${mode}-${n}`,
        edge ? edgeVars(/** @type {"single" | "sharded"} */ (mode), n) : {},
        edge ? undefined : "bench/ceiling/wrangler.toml",
      );
      try {
        await runSize(server, mode, n);
        save();
        if (edge && options.orderer && n === Math.min(...options.sizes)) {
          await runOrderer(server, mode);
          save();
        }
      } finally {
        await server.stop();
      }
    }
  }
} catch (error) {
  errors.push(error instanceof Error ? error.message : String(error));
  process.stderr.write(`bench --sweep: ${errors[0]}\n`);
}
const table = save();
log(`\n${table}`);
rmSync(snapshot, { recursive: true, force: true });
liveDirs.delete(snapshot);
process.exit(errors.length > 0 ? 1 : 0);
