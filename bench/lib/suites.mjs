/**
 * The default bench's scenarios on one server (bench/README.md, "Scenarios"): the connect storm and
 * the fan-outs of a run, the idle-memory figure once per server, and a warm-up; each run again if
 * wrangler restarted the runtime meanwhile.
 */
import { randomBytes } from "node:crypto";
import { sleep } from "../../scripts/lib/processes.mjs";
import { closeAll, openMany } from "./clients.mjs";
import { fanout, rampOf } from "./fanout.mjs";
import { percentile, round, sorted } from "./stats.mjs";

/** Idle connections are opened in this many batches, each one RSS sample. */
const IDLE_BATCHES = 3;

/**
 * @param {object} o
 * @param {ReturnType<typeof import("./bench-options.mjs").benchOptions>["options"]} o.options
 * @param {(server: import("./wrangler.mjs").RunningServer) => import("./clients.mjs").Target} o.targetOf
 * @param {{ client: number[], server: number[], clientExtraPct: number } | undefined} o.coreSides
 * @param {(line: string) => void} o.log
 */
export function benchSuites({ options, targetOf, coreSides, log }) {
  /**
   * Runs `scenario` and, if wrangler restarted the runtime meanwhile (a crash, or a reload), finds the
   * new runtime and runs it once more. The restarts are recorded in `suite.restarts`.
   * @template T
   * @param {import("./wrangler.mjs").RunningServer} server
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
   * @param {import("./wrangler.mjs").RunningServer} server
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
            ...rampOf(options, shape),
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
   * @param {import("./wrangler.mjs").RunningServer} server
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
   * @param {import("./wrangler.mjs").RunningServer} server
   */
  async function idle(server) {
    const target = targetOf(server);
    const tag = `idle-${randomBytes(3).toString("hex")}`;
    const perBatch = Math.ceil(options.idleN / IDLE_BATCHES);
    /** @type {(import("ws").WebSocket | undefined)[]} */
    const sockets = [];
    const settleMs = options.quick ? 500 : 1_500;
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

  /** Exercises each code path once so that the first measured run is not also the JIT's warm-up. */
  async function warmUp(/** @type {import("./wrangler.mjs").RunningServer} */ server) {
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

  return { withRestartRetry, runSuite, idle, warmUp };
}
