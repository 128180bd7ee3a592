/**
 * `npm run bench -- --check-pinning` (bench/README.md, "CPU pinning"): is the client the bottleneck?
 * The fan-out capacity as is, then with a busy loop taking part of the servers' CPU, then part of the
 * client's; if the client is not the bottleneck, only the second moves the figure.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { sleep } from "../../scripts/lib/processes.mjs";
import { fanout, rampOf } from "./fanout.mjs";
import { median } from "./report.mjs";
import { round } from "./stats.mjs";

/** @typedef {ReturnType<typeof import("./bench-options.mjs").benchOptions>["options"]} Options */
/** @typedef {ReturnType<typeof import("./pinning.mjs").pinClient>["pinning"]} Pinning */

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

/**
 * Fan-out capacity of each server (the ceiling by default) and shape three ways, interleaved:
 * as is; with a busy loop sharing the servers' CPU; with a busy loop sharing the client's CPU. If the
 * client is not the bottleneck, only the second moves the figure.
 * @param {object} o
 * @param {Options} o.options
 * @param {Pinning} o.pinning
 * @param {import("./wrangler.mjs").RunningServer[]} o.servers
 * @param {(server: import("./wrangler.mjs").RunningServer) => import("./clients.mjs").Target} o.targetOf
 * @param {(line: string) => void} o.log
 */
export async function checkPinning({ options, pinning, servers, targetOf, log }) {
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
              ...rampOf(options, shape),
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

/**
 * The pinning check's table.
 * @param {any} result @param {Options} options @param {Pinning} pinning
 */
export function pinningMarkdown(result, options, pinning) {
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
