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
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { join } from "node:path";
import { benchOptions } from "./lib/bench-options.mjs";
import { benchServers } from "./lib/bench-servers.mjs";
import { guardProcess, liveDirs, removeDir } from "./lib/cleanup.mjs";
import { pinClient } from "./lib/pinning.mjs";
import { checkPinning, pinningMarkdown } from "./lib/pinning-check.mjs";
import { machineBusySeconds } from "./lib/procfs.mjs";
import { markdown, summarize } from "./lib/report.mjs";
import { gitOut, snapshotHere, snapshotRef } from "./lib/snapshots.mjs";
import { round } from "./lib/stats.mjs";
import { benchSuites } from "./lib/suites.mjs";
import { targetsMarkdown } from "./lib/targets.mjs";
import { REPO_ROOT, startServer } from "./lib/wrangler.mjs";

// `--sweep`: the room-size sweep (bench/sweep.mjs), with its own flags; the default bench is unchanged.
if (process.argv.slice(2).includes("--sweep")) {
  await import("./sweep.mjs");
}

const { flags, options, fail } = benchOptions();
const quick = options.quick;
const log = (/** @type {string} */ line) => process.stdout.write(`${line}\n`);

// Stop everything we started, however we leave.
const watchdog = guardProcess("bench", options.maxSeconds);

const { nproc, pinning, coreSides } = pinClient({
  noPin: flags["no-pin"] === true,
  clientCpus: flags["client-cpus"],
  serverCpus: flags["server-cpus"],
});
if (!pinning.enabled && options.checkPinning) fail(`--check-pinning needs pinning (${pinning.note})`);

const { edgeVars, specs: SPECS, targetOf } = benchServers(options, flags["edge-config"]);
const { withRestartRetry, runSuite, idle, warmUp } = benchSuites({ options, targetOf, coreSides, log });

// -- the machine -----------------------------------------------------------------------------------

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
const snapshot = snapshotHere("edge-rooms-bench-src");
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
  for (const dir of [snapshot, baselineSnapshot]) removeDir(dir);
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
    result.pinningCheck = await checkPinning({ options, pinning, servers, targetOf, log });
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
  for (const dir of [snapshot, baselineSnapshot]) removeDir(dir);
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
  table = pinningMarkdown(result, options, pinning);
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
