#!/usr/bin/env node
/**
 * `npm run bench [-- flags]`: edge-rooms next to the ceiling (a bare Durable Object room) and the peer
 * (the same room on partyserver), each under local `wrangler dev`, driven by real `ws` clients from
 * this process, in interleaved runs. Writes bench/results/<timestamp>.json and bench/results/latest.md
 * and prints the table. See bench/README.md. `--help` lists the flags.
 *
 * Only 127.0.0.1 is ever contacted; every server started here is stopped (its whole process group)
 * on the way out, whatever the way out is.
 */
import { execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus, loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { SignJWT } from "jose";
import { closeAll, openMany } from "./lib/clients.mjs";
import { fanout } from "./lib/fanout.mjs";
import { markdown, median, summarize } from "./lib/report.mjs";
import { gitOut, scratchDir, snapshotRef, snapshotRepo } from "./lib/snapshots.mjs";
import { percentile, round, sorted } from "./lib/stats.mjs";
import { targetsMarkdown } from "./lib/targets.mjs";
import { killAllGroupsNow, liveDirs, REPO_ROOT, sleep, startServer } from "./lib/wrangler.mjs";

// `--sweep`: the room-size sweep (bench/sweep.mjs), with its own flags; the default bench is unchanged.
if (process.argv.slice(2).includes("--sweep")) {
  await import("./sweep.mjs");
}

const HELP = `usage: npm run bench -- [flags]

  --quick                 one run, small sizes, short steps (a smoke test, under ~40 s)
  --runs N                interleaved runs per server (default 3; medians with min/max)
  --servers LIST          which servers, of edge-rooms,ceiling,peer (default all three), and edge-rooms-v1:
                          edge-rooms again (own wrangler dev, same snapshot and vars) with clients that do
                          not ask for batch frames (edge-rooms' clients connect with ?batch=1)
  --scenarios LIST        idle,storm,fanout (default all three)
  --storm-n N             connections in the connect storm (default 500)
  --storm-rooms N         rooms the storm spreads over (default 10)
  --storm-concurrency N   handshakes in flight at once (default 10)
  --idle-n N              idle connections for the memory figure, opened in 3 batches (default 1200)
  --idle-rooms N          rooms they spread over (default 12)
  --fanout LIST           RxC shapes, rooms x clients per room (default 1x50,10x10,1x500); a shape may
                          bring its own ladder and moderate rate: RxC:r1/r2/…@moderate (then it doubles
                          up to 4x its last listed rate); 1x500 defaults to 1x500:0.1/0.2/0.4/0.8@0.1
  --rates LIST            msg/s per client, stepped up in order (default 5,10,20,40,80)
  --max-rate R            while every step passes, keep doubling the rate up to R (default 320)
  --refine N              bisection steps between the last pass and the first failure (default 1)
  --step-ms MS            length of each fan-out step (default 1200)
  --drain-ms MS           longest wait for a step's last deliveries (default 1000)
  --warmup-ms MS          unmeasured warm-up at the first rate before each ramp (default 500)
  --p99-ms MS             a step passes with p99 at or under this and nothing lost (default 100)
  --moderate-rate R       step whose latency is reported as "at moderate load" (default 10)
  --pad N                 extra characters in each message's data (default 0)
  --via direct|proxy      talk to the Worker's workerd directly (default) or through wrangler's dev proxy
  --no-pin                do not pin the client and the servers to separate CPUs
  --client-cpus LIST      taskset CPU list of this process (default 0)
  --server-cpus LIST      taskset CPU list of the servers (default 1)
  --check-pinning         instead of the bench: fan-out capacity of the ceiling (or --servers) as is, with
                          the server's CPU, then with the client's CPU, partly taken by a busy loop
  --hog-duty F            share of a CPU the busy loop of --check-pinning takes (default 0.5)
  --max-seconds S         abort (and stop everything) after this long (default 1500)
  --out DIR               where results go (default bench/results)
  --verbose               echo wrangler's output
  --edge-config PATH      a wrangler.toml for edge-rooms other than the repo's (e.g. to compare a variant)
  --sweep                 instead of the bench: the room-size sweep (npm run bench -- --sweep --help)
  --baseline REF          also run edge-rooms as of git REF (e.g. HEAD~1), as server "baseline", side by side
                          with the working tree in every run: the edge-rooms / baseline column is the change
`;

const { values: flags } = parseArgs({
  options: {
    help: { type: "boolean" },
    quick: { type: "boolean" },
    runs: { type: "string" },
    servers: { type: "string" },
    scenarios: { type: "string" },
    "storm-n": { type: "string" },
    "storm-rooms": { type: "string" },
    "storm-concurrency": { type: "string" },
    "idle-n": { type: "string" },
    "idle-rooms": { type: "string" },
    fanout: { type: "string" },
    rates: { type: "string" },
    "max-rate": { type: "string" },
    refine: { type: "string" },
    "step-ms": { type: "string" },
    "drain-ms": { type: "string" },
    "warmup-ms": { type: "string" },
    "p99-ms": { type: "string" },
    "moderate-rate": { type: "string" },
    pad: { type: "string" },
    via: { type: "string" },
    "no-pin": { type: "boolean" },
    "client-cpus": { type: "string" },
    "server-cpus": { type: "string" },
    "check-pinning": { type: "boolean" },
    "max-seconds": { type: "string" },
    "hog-duty": { type: "string" },
    out: { type: "string" },
    verbose: { type: "boolean" },
    "edge-config": { type: "string" },
    baseline: { type: "string" },
  },
});
if (flags.help) {
  process.stdout.write(HELP);
  process.exit(0);
}

/** @param {string | undefined} raw @param {number} fallback @param {string} name */
function num(raw, fallback, name, min = 0) {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min) fail(`--${name} must be a number ≥ ${min}`);
  return n;
}
/** @param {string} message @returns {never} */
function fail(message) {
  process.stderr.write(`bench: ${message}\n${HELP}`);
  process.exit(2);
}
/** @param {string} raw */
const list = (raw) =>
  raw
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

/**
 * A big room's ladder: at 500 per room one message is 500 deliveries, so the rates are 100× lower
 * than 1×50's for the same deliveries/s (0.1 msg/s/client = 25 000/s, 1×50's moderate load).
 */
const BIG_ROOM_LADDER = "0.1/0.2/0.4/0.8@0.1";
/**
 * `RxC` or `RxC:r1/r2/…@moderate`. Shapes without their own ladder get `--rates`, `--max-rate` and
 * `--moderate-rate` (filled in below); with one, the ramp doubles up to 4× its last listed rate.
 * @param {string} raw
 * @returns {{ shape: string, rooms: number, clients: number, rates?: number[], maxRate?: number, moderateRate?: number }}
 */
function parseShape(raw) {
  const m = /^(\d+)x(\d+)(?::([\d./]+)(?:@([\d.]+))?)?$/.exec(raw);
  if (!m) fail(`--fanout shapes look like 1x50 or 1x500:0.1/0.2/0.4@0.1, not ${raw}`);
  const shape = `${m[1]}x${m[2]}`;
  const ladder = m[3] ?? (shape === "1x500" ? BIG_ROOM_LADDER.split("@")[0] : undefined);
  const moderate = m[3] ? m[4] : shape === "1x500" ? BIG_ROOM_LADDER.split("@")[1] : undefined;
  const out = { shape, rooms: Number(m[1]), clients: Number(m[2]) };
  if (ladder === undefined) return out;
  const rates = list(ladder.replaceAll("/", ",")).map((r) => num(r, 0, "fanout", 0.01));
  rates.sort((a, b) => a - b);
  return {
    ...out,
    rates,
    maxRate: 4 * (rates[rates.length - 1] ?? 1),
    moderateRate: moderate === undefined ? rates[0] : num(moderate, 0, "fanout", 0.01),
  };
}

const quick = flags.quick === true;
const ALL_SERVERS = ["edge-rooms", "ceiling", "peer", ...(flags.baseline ? ["baseline"] : [])];
/** Selectable with --servers, never run by default: edge-rooms with clients that do not ask for batch frames. */
const OPTIONAL_SERVERS = ["edge-rooms-v1"];
const options = {
  quick,
  runs: num(flags.runs, quick ? 1 : 3, "runs", 1),
  servers: list(flags.servers ?? ALL_SERVERS.join(",")),
  baseline: flags.baseline,
  scenarios: list(flags.scenarios ?? "idle,storm,fanout"),
  stormN: num(flags["storm-n"], quick ? 100 : 500, "storm-n", 1),
  stormRooms: num(flags["storm-rooms"], quick ? 4 : 10, "storm-rooms", 1),
  stormConcurrency: num(flags["storm-concurrency"], 10, "storm-concurrency", 1),
  idleN: num(flags["idle-n"], quick ? 150 : 1200, "idle-n", 3),
  idleRooms: num(flags["idle-rooms"], quick ? 3 : 12, "idle-rooms", 1),
  fanout: list(flags.fanout ?? (quick ? "1x20,4x5" : "1x50,10x10,1x500")).map(parseShape),
  rates: list(flags.rates ?? (quick ? "10,40" : "5,10,20,40,80")).map((r) => num(r, 0, "rates", 0.1)),
  maxRate: num(flags["max-rate"], quick ? 40 : 320, "max-rate", 0.1),
  refine: num(flags.refine, quick ? 0 : 1, "refine"),
  stepMs: num(flags["step-ms"], quick ? 800 : 1200, "step-ms", 100),
  drainMs: num(flags["drain-ms"], 1000, "drain-ms", 100),
  warmupMs: num(flags["warmup-ms"], quick ? 200 : 500, "warmup-ms"),
  p99LimitMs: num(flags["p99-ms"], 100, "p99-ms", 1),
  moderateRate: num(flags["moderate-rate"], 10, "moderate-rate", 0.1),
  padBytes: num(flags.pad, 0, "pad"),
  via: flags.via ?? "direct",
  checkPinning: flags["check-pinning"] === true,
  maxSeconds: num(flags["max-seconds"], 1500, "max-seconds", 10),
  hogDuty: num(flags["hog-duty"], 0.5, "hog-duty", 0.05),
  out: flags.out ?? join(REPO_ROOT, "bench", "results"),
};
for (const f of options.fanout) {
  f.rates ??= options.rates;
  f.maxRate ??= options.maxRate;
  f.moderateRate ??= options.moderateRate;
}
for (const s of options.servers)
  if (!ALL_SERVERS.includes(s) && !OPTIONAL_SERVERS.includes(s)) fail(`unknown server ${s}`);
for (const s of options.scenarios) if (!["idle", "storm", "fanout"].includes(s)) fail(`unknown scenario ${s}`);
if (options.via !== "direct" && options.via !== "proxy") fail("--via is direct or proxy");
options.rates.sort((a, b) => a - b);
if (options.checkPinning && !flags.servers) options.servers = ["ceiling"];

const log = (/** @type {string} */ line) => process.stdout.write(`${line}\n`);

// -- safety: stop everything we started, however we leave ------------------------------------------

process.on("exit", killAllGroupsNow);
for (const signal of /** @type {const} */ (["SIGINT", "SIGTERM", "SIGHUP"])) {
  process.on(signal, () => {
    process.stderr.write(`\nbench: ${signal}, stopping the servers\n`);
    killAllGroupsNow();
    process.exit(130);
  });
}
const watchdog = setTimeout(() => {
  process.stderr.write(`\nbench: still running after ${options.maxSeconds} s (--max-seconds); aborting\n`);
  killAllGroupsNow();
  process.exit(3);
}, options.maxSeconds * 1000);

// -- CPU pinning -------------------------------------------------------------------------------------

const nproc = availableParallelism();
const hasTaskset = (() => {
  try {
    execFileSync("taskset", ["-p", String(process.pid)], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();
const pinning = {
  enabled: flags["no-pin"] !== true && hasTaskset && nproc >= 2,
  clientCpus: flags["client-cpus"] ?? "0",
  serverCpus: flags["server-cpus"] ?? "1",
  note: "",
};
if (flags["no-pin"]) pinning.note = "--no-pin";
else if (!hasTaskset) pinning.note = "taskset not found (apt-get install util-linux)";
else if (nproc < 2) pinning.note = "fewer than 2 CPUs";
/** "0-2,5" → [0, 1, 2, 5]. @param {string} cpuList */
function parseCpuList(cpuList) {
  return cpuList.split(",").flatMap((part) => {
    const [a = "", b = a] = part.split("-");
    const out = [];
    for (let c = Number(a); c <= Number(b); c++) out.push(c);
    return out;
  });
}
const coreSides = pinning.enabled
  ? { client: parseCpuList(pinning.clientCpus), server: parseCpuList(pinning.serverCpus), clientExtraPct: 0 }
  : undefined;
if (pinning.enabled) {
  // All threads of this process, the client; the servers are started under `taskset -c`.
  execFileSync("taskset", ["-a", "-p", "-c", pinning.clientCpus, String(process.pid)], { stdio: "ignore" });
} else if (options.checkPinning) {
  fail(`--check-pinning needs pinning (${pinning.note})`);
}

// -- the servers under test --------------------------------------------------------------------------

const secret = randomBytes(48).toString("hex");
const maxRate = Math.max(...options.fanout.flatMap((f) => [f.maxRate ?? 0, ...(f.rates ?? [])]), 1);
const maxPerRoom = Math.max(
  Math.ceil(options.stormN / options.stormRooms),
  Math.ceil(options.idleN / options.idleRooms),
  ...options.fanout.map((f) => f.clients),
  // The warm-up room.
  10,
);
/** @type {Record<string, string>} */
const edgeVars = { JWT_SECRET: secret };
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
    config: flags["edge-config"],
    vars: edgeVars,
    path: (/** @type {string} */ room) => `/ws/chat/${room}?batch=1`,
  },
  // The same snapshot and vars, its own wrangler dev, clients that do not ask for batch frames (v1).
  "edge-rooms-v1": {
    config: flags["edge-config"],
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
const tokens = await mintTokens(tokenCount);

/** @param {number} count */
async function mintTokens(count) {
  const key = new TextEncoder().encode(secret);
  const exp = Math.floor(Date.now() / 1000) + 3 * 3600;
  const out = [];
  for (let i = 0; i < count; i++) {
    out.push(
      await new SignJWT({ name: `user ${i}` })
        .setProtectedHeader({ alg: "HS256", typ: "JWT" })
        .setSubject(`u${i}`)
        .setIssuedAt()
        .setExpirationTime(exp)
        .sign(key),
    );
  }
  return out;
}

/** @param {import("./lib/wrangler.mjs").RunningServer} server */
function targetOf(server) {
  const spec = SPECS[/** @type {keyof typeof SPECS} */ (server.name)];
  const wsBase = server.baseUrl.replace(/^http/, "ws");
  return {
    name: server.name,
    url: (/** @type {string} */ room) => `${wsBase}${spec.path(room)}`,
    headers: (/** @type {number} */ i) =>
      EDGE.has(server.name) ? { Authorization: `Bearer ${tokens[i % tokens.length]}` } : undefined,
  };
}

// -- the machine -----------------------------------------------------------------------------------

/** Busy CPU seconds of the whole machine, from /proc/stat. */
function machineBusySeconds() {
  const fields = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "").trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = fields;
  return (user + nice + system + irq + softirq + steal) / 100;
}
const ownCpuSeconds = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
function wranglerVersion() {
  try {
    return JSON.parse(readFileSync(join(REPO_ROOT, "node_modules", "wrangler", "package.json"), "utf8")).version;
  } catch {
    return "unknown";
  }
}

// -- the suites --------------------------------------------------------------------------------------

/**
 * Runs `scenario` and, if wrangler restarted the runtime meanwhile (a crash, or a reload), finds the
 * new runtime and runs it once more. The restarts are recorded in `suite.restarts`.
 * @template T
 * @param {import("./lib/wrangler.mjs").RunningServer} server
 * @param {any} suite
 * @param {string} name
 * @param {() => Promise<T>} scenario
 * @returns {Promise<T>}
 */
async function withRestartRetry(server, suite, name, scenario) {
  for (let attempt = 1; ; attempt++) {
    const before = server.reloads();
    const result = await scenario();
    if (server.reloads() === before) return result;
    const restart = { scenario: name, attempt, output: server.tail().split("\n").slice(-12) };
    suite.restarts = [...(suite.restarts ?? []), restart];
    log(`  ${server.name}: WARNING its runtime restarted during ${name} (attempt ${attempt}); last output:`);
    for (const line of restart.output) log(`    | ${line}`);
    await sleep(2_000);
    if (!(await server.refresh())) throw new Error(`${server.name}: its runtime is gone`);
    if (attempt >= 2) return result;
  }
}

/**
 * One server's scenarios in one run.
 * @param {import("./lib/wrangler.mjs").RunningServer} server
 * @param {number} run
 */
async function runSuite(server, run) {
  if (server.runtimePid === undefined || Number.isNaN(server.rss())) {
    // wrangler restarted the runtime (new pid, new port): find it again.
    if (!(await server.refresh())) throw new Error(`${server.name}: its runtime is gone`);
  }
  const tag = `r${run}-${randomBytes(3).toString("hex")}`;
  /** @type {any} */
  const suite = { via: server.via };
  if (options.scenarios.includes("storm")) {
    suite.storm = await withRestartRetry(server, suite, "storm", () => storm(server, tag));
  }
  if (options.scenarios.includes("fanout")) {
    suite.fanout = {};
    for (const shape of options.fanout) {
      suite.fanout[shape.shape] = await withRestartRetry(server, suite, `fan-out ${shape.shape}`, async () => {
        log(`  ${server.name} fan-out ${shape.rooms}×${shape.clients}:`);
        const reloads = server.reloads();
        const result = await fanout({
          target: targetOf(server),
          runTag: `${tag}-f${shape.shape}-${randomBytes(2).toString("hex")}`,
          rooms: shape.rooms,
          clients: shape.clients,
          rates: shape.rates ?? options.rates,
          maxRate: shape.maxRate ?? options.maxRate,
          stepMs: options.stepMs,
          drainMs: options.drainMs,
          warmupMs: options.warmupMs,
          p99LimitMs: options.p99LimitMs,
          refine: options.refine,
          padBytes: options.padBytes,
          serverCpu: server.cpu,
          cores: coreSides,
          alive: () => server.reloads() === reloads,
          log,
        });
        if (result.error) log(`    ${result.error}`);
        await sleep(300);
        return result;
      });
    }
  }
  return suite;
}

/**
 * The connect storm: `stormN` connections, timed; closed again afterwards.
 * @param {import("./lib/wrangler.mjs").RunningServer} server
 * @param {string} tag
 */
async function storm(server, tag) {
  const target = targetOf(server);
  await sleep(500);
  const cpu0 = { client: process.cpuUsage(), server: server.cpu(), tools: server.toolsCpu() };
  const opened = await openMany({
    target,
    count: options.stormN,
    concurrency: options.stormConcurrency,
    roomOf: (i) => `${tag}-storm-${i % options.stormRooms}`,
    timeoutMs: 20_000,
  });
  const client = process.cpuUsage(cpu0.client);
  const serverCpu = server.cpu() - cpu0.server;
  const toolsCpu = server.toolsCpu() - cpu0.tools;
  const lat = sorted(opened.latencies);
  const result = {
    n: options.stormN,
    rooms: options.stormRooms,
    ok: opened.ok,
    failed: opened.failed,
    failures: opened.failures,
    seconds: round(opened.seconds, 3),
    perSecond: round(opened.perSecond),
    p50: round(percentile(lat, 50), 2),
    p95: round(percentile(lat, 95), 2),
    p99: round(percentile(lat, 99), 2),
    max: round(lat[lat.length - 1] ?? Number.NaN, 2),
    // CPU milliseconds per connection: this process, the Worker's runtime, wrangler's own processes.
    clientCpuMsPerConnection: round((client.user + client.system) / 1000 / Math.max(1, opened.ok), 3),
    serverCpuMsPerConnection: round((serverCpu * 1000) / Math.max(1, opened.ok), 3),
    wranglerCpuMsPerConnection: round((toolsCpu * 1000) / Math.max(1, opened.ok), 3),
  };
  log(
    `  ${server.name} storm: ${opened.ok}/${options.stormN} in ${result.seconds} s = ${result.perSecond}/s, ` +
      `p50 ${result.p50} p99 ${result.p99} ms; CPU ms/conn: runtime ${result.serverCpuMsPerConnection}, ` +
      `wrangler ${result.wranglerCpuMsPerConnection}, client ${result.clientCpuMsPerConnection}` +
      (opened.failed ? `; FAILED ${JSON.stringify(opened.failures)}` : ""),
  );
  await closeAll(opened.sockets, 10_000);
  await sleep(300);
  return result;
}

/**
 * Idle memory, once per server before the runs: `idleN` connections opened in `IDLE_BATCHES` batches
 * and left open and idle; after each batch (and a settle), the runtime's RSS. Each batch's growth per
 * connection is one sample; the batches' connections stay open, so a batch's growth cannot be memory
 * that an earlier one freed. All closed at the end.
 * @param {import("./lib/wrangler.mjs").RunningServer} server
 */
async function idle(server) {
  const target = targetOf(server);
  const tag = `idle-${randomBytes(3).toString("hex")}`;
  const perBatch = Math.ceil(options.idleN / IDLE_BATCHES);
  /** @type {(import("ws").WebSocket | undefined)[]} */
  const sockets = [];
  const settleMs = quick ? 500 : 1_500;
  await sleep(settleMs);
  const rss = [server.rss()];
  const failures = [];
  try {
    for (let b = 0; b < IDLE_BATCHES; b++) {
      const opened = await openMany({
        target,
        count: perBatch,
        concurrency: options.stormConcurrency,
        roomOf: (i) => `${tag}-${(b * perBatch + i) % options.idleRooms}`,
        firstClient: b * perBatch,
        timeoutMs: 20_000,
      });
      sockets.push(...opened.sockets);
      if (opened.failed) failures.push(opened.failures);
      await sleep(settleMs);
      rss.push(server.rss());
    }
  } finally {
    await closeAll(sockets, 10_000);
  }
  const open = sockets.filter((ws) => ws !== undefined).length;
  const kib = rss.slice(1).map((r, i) => round((r - (rss[i] ?? r)) / perBatch, 2));
  const total =
    rss.length > 1 ? round(((rss[rss.length - 1] ?? 0) - (rss[0] ?? 0)) / Math.max(1, open), 2) : Number.NaN;
  log(
    `  ${server.name} idle: ${open} connections in ${options.idleRooms} rooms; RSS ${rss.map((r) => Math.round(r / 1024)).join(" → ")} MiB; ` +
      `KiB per connection by batch ${kib.join(", ")}; overall ${total}`,
  );
  return {
    n: options.idleN,
    rooms: options.idleRooms,
    open,
    rssKiB: rss,
    kibPerConnection: kib,
    overall: total,
    failures,
  };
}
const IDLE_BATCHES = 3;

/** Exercises each code path once so that the first measured run is not also the JIT's warm-up. */
async function warmUp(/** @type {import("./lib/wrangler.mjs").RunningServer} */ server) {
  await fanout({
    target: targetOf(server),
    runTag: `warmup-${randomBytes(3).toString("hex")}`,
    rooms: 1,
    clients: 10,
    rates: [options.rates[0] ?? 5],
    maxRate: options.rates[0] ?? 5,
    stepMs: 300,
    drainMs: 1_000,
    warmupMs: 0,
    p99LimitMs: Number.POSITIVE_INFINITY,
    refine: 0,
    padBytes: options.padBytes,
    serverCpu: server.cpu,
    log: () => {},
  });
}

/**
 * A busy loop on `cpuList` that takes about `duty` of that CPU, bounded by `ms`. It spins 1 ms at a
 * time and then sleeps, so that whoever shares the CPU loses throughput but waits at most ~1 ms for it
 * (a plain `while (true)` would also add the scheduler's multi-millisecond slices to every latency).
 * @param {string} cpuList @param {number} ms @param {number} duty
 */
function hog(cpuList, ms, duty) {
  const idleMs = Math.max(0, (1 - duty) / duty);
  const code =
    `const end = Date.now() + ${ms}; const cell = new Int32Array(new SharedArrayBuffer(4));` +
    `while (Date.now() < end) { const t = performance.now(); while (performance.now() - t < 1) {}` +
    ` if (${idleMs} > 0) Atomics.wait(cell, 0, 0, ${idleMs}); }`;
  const child = spawn("taskset", ["-c", cpuList, process.execPath, "-e", code], { stdio: "ignore" });
  return () => {
    if (child.exitCode === null) child.kill("SIGKILL");
  };
}

// -- main --------------------------------------------------------------------------------------------

const startedAt = new Date();
const t0 = performance.now();
const loadBefore = loadavg().map((x) => round(x, 2));
log(
  `bench: ${options.checkPinning ? "pinning check" : quick ? "quick" : "full"}; servers ${options.servers.join(", ")}; ` +
    `${nproc} CPUs; ${pinning.enabled ? `client on CPU ${pinning.clientCpus}, servers on CPU ${pinning.serverCpus}` : `not pinned (${pinning.note})`}`,
);
log(`bench: starting wrangler dev × ${options.servers.length}…`);
/** @type {import("./lib/wrangler.mjs").RunningServer[]} */
let servers = [];
// The servers run from a snapshot of the repo taken now, so that edits made during the bench (wrangler
// dev would reload on them) do not change the code under test halfway. Removed on every way out.
const snapshot = join(scratchDir(), `edge-rooms-bench-src-${process.pid}`);
liveDirs.add(snapshot);
snapshotRepo(snapshot);
const baselineSnapshot = `${snapshot}-baseline`;
if (options.baseline !== undefined && options.servers.includes("baseline")) {
  liveDirs.add(baselineSnapshot);
  snapshotRef(options.baseline, baselineSnapshot);
  log(`bench: baseline is ${options.baseline} (${gitOut(["rev-parse", "--short", options.baseline])})`);
}
const started = await Promise.allSettled(
  options.servers.map((name) =>
    startServer({
      name,
      root: name === "baseline" ? baselineSnapshot : snapshot,
      config: SPECS[/** @type {keyof typeof SPECS} */ (name)].config,
      vars: SPECS[/** @type {keyof typeof SPECS} */ (name)].vars,
      cpus: pinning.enabled ? { server: pinning.serverCpus, tools: pinning.clientCpus } : undefined,
      direct: options.via === "direct",
      echo: flags.verbose === true,
    }),
  ),
);
servers = started.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
const startErrors = started.flatMap((r) => (r.status === "rejected" ? [r.reason] : []));
if (startErrors.length > 0) {
  for (const error of startErrors) process.stderr.write(`bench: ${error instanceof Error ? error.message : error}\n`);
  await Promise.all(servers.map((s) => s.stop()));
  for (const dir of [snapshot, baselineSnapshot]) {
    rmSync(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
  }
  process.exit(1);
}
for (const s of servers)
  log(`  ${s.name}: ${s.baseUrl} (${s.via}; wrangler ${s.publicUrl}; runtime pid ${s.runtimePid})`);

/** @type {any} */
const result = {
  startedAt: startedAt.toISOString(),
  options,
  machine: {
    nproc,
    cpuModel: cpus()[0]?.model ?? "unknown",
    node: process.version,
    wrangler: wranglerVersion(),
    pinning,
    loadBefore,
    edgeRoomsVars: Object.fromEntries(Object.entries(edgeVars).filter(([k]) => k !== "JWT_SECRET")),
  },
  servers: servers.map((s) => ({ name: s.name, via: s.via })),
  runs: [],
};

let exitCode = 0;
try {
  log(`bench: servers up after ${round((performance.now() - t0) / 1000, 1)} s; warming up…`);
  for (const server of servers) await warmUp(server);
  const busy0 = machineBusySeconds();
  const own0 = ownCpuSeconds() + servers.reduce((sum, s) => sum + s.cpu(), 0);
  const wall0 = performance.now();

  if (options.checkPinning) {
    result.pinningCheck = await checkPinning();
  } else {
    if (options.scenarios.includes("idle")) {
      log("bench: idle memory");
      result.idle = {};
      for (const server of servers)
        result.idle[server.name] = await withRestartRetry(server, {}, "idle", () => idle(server));
    }
    for (let run = 1; run <= options.runs; run++) {
      // Rotate the order each run so no server always goes first (A B C, B C A, C A B, …).
      const order = servers.map((_, i) => servers[(i + run - 1) % servers.length]).filter((s) => s !== undefined);
      log(`bench: run ${run}/${options.runs} (${order.map((s) => s.name).join(" → ")})`);
      /** @type {Record<string, any>} */
      const suites = {};
      for (const server of order) suites[server.name] = await runSuite(server, run);
      result.runs.push({ run, order: order.map((s) => s.name), suites });
    }
  }

  const wall = (performance.now() - wall0) / 1000;
  const own = ownCpuSeconds() + servers.reduce((sum, s) => sum + s.cpu(), 0) - own0;
  const other = Math.max(0, machineBusySeconds() - busy0 - own);
  const otherCpuPct = round((other / wall) * 100);
  result.machine.background = {
    otherCpuPct,
    verdict: otherCpuPct < 10 ? "the machine was quiet" : "the machine was SHARED (numbers are noisier)",
  };
} catch (error) {
  exitCode = 1;
  process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : error}\n`);
  for (const s of servers) process.stderr.write(`--- ${s.name} output ---\n${s.tail()}\n`);
} finally {
  await Promise.all(servers.map((s) => s.stop()));
  for (const dir of [snapshot, baselineSnapshot]) {
    rmSync(dir, { recursive: true, force: true });
    liveDirs.delete(dir);
  }
  clearTimeout(watchdog);
}
if (exitCode !== 0) process.exit(exitCode);

result.finishedAt = new Date().toISOString();
result.machine.loadAfter = loadavg().map((x) => round(x, 2));
mkdirSync(options.out, { recursive: true });
const stamp = result.startedAt.replace(/[:.]/g, "-");
const jsonPath = join(options.out, `${options.checkPinning ? "pinning-" : ""}${stamp}.json`);
let table;
if (options.checkPinning) {
  table = pinningMarkdown(result);
} else {
  result.summary = summarize(result);
  table = markdown(result, result.summary, targetsMarkdown(result));
}
writeFileSync(jsonPath, `${JSON.stringify(result, null, 2)}\n`);
writeFileSync(join(options.out, options.checkPinning ? "pinning.md" : "latest.md"), `${table}\n`);
log("");
log(table);
log("");
log(`bench: wrote ${jsonPath} (${round((performance.now() - t0) / 1000, 1)} s)`);

// -- pinning check -----------------------------------------------------------------------------------

/**
 * Fan-out capacity of each server (the ceiling by default) and shape three ways, interleaved:
 * as is; with a busy loop sharing the servers' CPU; with a busy loop sharing the client's CPU. If the
 * client is not the bottleneck, only the second moves the figure.
 */
async function checkPinning() {
  const conditions = [
    { name: "as is", cpus: undefined },
    { name: `server CPU −${Math.round(options.hogDuty * 100)}%`, cpus: pinning.serverCpus },
    { name: `client CPU −${Math.round(options.hogDuty * 100)}%`, cpus: pinning.clientCpus },
  ];
  /** @type {Record<string, Record<string, number[]>>} server × shape → condition → capacities */
  const capacity = {};
  /** @type {any[]} */
  const detail = [];
  for (let run = 1; run <= options.runs; run++) {
    for (const server of servers) {
      for (const shape of options.fanout) {
        const key = `${server.name} ${shape.rooms}×${shape.clients}`;
        for (const condition of conditions) {
          log(`bench: pinning check run ${run}, ${key}, ${condition.name}:`);
          const budget = (options.rates.length + options.refine + 6) * (options.stepMs + options.drainMs + 6_000);
          const stopHog = condition.cpus ? hog(condition.cpus, budget, options.hogDuty) : () => {};
          try {
            const r = await fanout({
              target: targetOf(server),
              runTag: `pin${run}-${randomBytes(3).toString("hex")}`,
              rooms: shape.rooms,
              clients: shape.clients,
              rates: shape.rates ?? options.rates,
              maxRate: shape.maxRate ?? options.maxRate,
              stepMs: options.stepMs,
              drainMs: options.drainMs,
              warmupMs: options.warmupMs,
              p99LimitMs: options.p99LimitMs,
              refine: options.refine,
              padBytes: options.padBytes,
              serverCpu: server.cpu,
              // No contention check here: the busy loop is the point.
              log,
            });
            const byCond = capacity[key] ?? {};
            capacity[key] = byCond;
            byCond[condition.name] = [...(byCond[condition.name] ?? []), r.capacity];
            detail.push({ run, server: server.name, shape: shape.shape, condition: condition.name, ...r });
          } finally {
            stopHog();
          }
          await sleep(500);
        }
      }
    }
  }
  return { conditions: conditions.map((c) => c.name), capacity, detail };
}

/** @param {any} result */
function pinningMarkdown(result) {
  const check = result.pinningCheck;
  const lines = [
    `### Pinning check ${result.startedAt}: fan-out capacity (delivered msg/s), median of ${options.runs} run(s)`,
    "",
    `Client on CPU ${pinning.clientCpus}, servers on CPU ${pinning.serverCpus}; a busy loop takes about ` +
      `${Math.round(options.hogDuty * 100)}% of one of them (1 ms spins). Capacity, and its ratio to "as is". ` +
      `Other processes: ${result.machine.background.otherCpuPct}% of a core (${result.machine.background.verdict}).`,
    "",
    `| Server, scenario | ${check.conditions.join(" | ")} |`,
    `| --- | ${check.conditions.map(() => "---:").join(" | ")} |`,
  ];
  for (const [server, byCond] of Object.entries(check.capacity)) {
    const base = median(/** @type {any} */ (byCond)[check.conditions[0]] ?? []);
    const cells = check.conditions.map((/** @type {string} */ c) => {
      const m = median(/** @type {any} */ (byCond)[c] ?? []);
      return c === check.conditions[0] ? String(round(m)) : `${round(m)} (${round(m / base, 2)}×)`;
    });
    lines.push(`| ${server} | ${cells.join(" | ")} |`);
  }
  return lines.join("\n");
}
