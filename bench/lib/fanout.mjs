/**
 * The fan-out scenario (bench/README.md, "Scenarios"): rooms × clients sockets, each sending at a fixed
 * rate that steps up until a step fails (p99 over the limit, or anything lost, out of order, refused
 * or closed), then bisects between the last pass and the first failure. The figure that counts is
 * the capacity, the highest delivered msg/s of a passing step.
 *
 * Every loop is bounded in count and in time, and every wait has a deadline.
 */

import { sleep } from "../../scripts/lib/processes.mjs";
import { closeAll, openMany } from "./clients.mjs";
import { Deliveries, sendPaced, total as sentIn } from "./deliveries.mjs";
import { coreBusyPct, coreTimes } from "./procfs.mjs";
import { percentile, round, sorted } from "./stats.mjs";

/** A step is "contended" when other work took more than this % of the client's or the server's CPU. */
const CONTENDED_PCT = 30;

/**
 * Runs one fan-out scenario: `rooms` × `clients` sockets, each sending at a fixed rate that is stepped
 * up until p99 passes the limit or anything is lost, then bisected `refine` times.
 * @param {object} o
 * @param {import("./clients.mjs").Target} o.target
 * @param {string} o.runTag Unique per run, so every run uses fresh rooms.
 * @param {number} o.rooms
 * @param {number} o.clients Per room.
 * @param {number[]} o.rates Messages per second per client, ascending.
 * @param {number} o.maxRate While every step passes, the rate doubles after the listed ones up to this.
 * @param {number} o.stepMs
 * @param {number} o.drainMs Longest wait for the last deliveries of a step.
 * @param {number} o.warmupMs
 * @param {number} o.p99LimitMs
 * @param {number} o.refine
 * @param {number} o.padBytes Extra characters in each message's data.
 * @param {() => number} o.serverCpu CPU seconds of the server so far.
 * @param {() => boolean} [o.alive] False once the server restarted: the ramp stops there.
 * @param {{ client: number[], server: number[], clientExtraPct: number }} [o.cores] The CPUs of each side
 *   (when pinned), to tell a step that other processes disturbed; `clientExtraPct` is expected other
 *   use of the client's CPU (none by default).
 * @param {(line: string) => void} o.log
 */
export async function fanout(o) {
  const total = o.rooms * o.clients;
  const state = new Deliveries(total, o.clients);
  /** Sockets closed that the bench did not close, in the step being measured. */
  let closes = 0;
  const pad = o.padBytes > 0 ? `,"p":"${"x".repeat(o.padBytes)}"` : "";

  const opened = await openMany({
    target: o.target,
    count: total,
    concurrency: 50,
    roomOf: (i) => `${o.runTag}-${Math.floor(i / o.clients)}`,
    timeoutMs: 15_000,
    onFrame: (data, i) => state.take(data, i),
    onClose: () => {
      closes++;
    },
  });
  const sockets = opened.sockets;
  if (opened.failed > 0) {
    await closeAll(sockets, 3_000);
    return {
      error: `${opened.failed} of ${total} clients could not connect: ${JSON.stringify(opened.failures)}`,
      steps: [],
      capacity: 0,
    };
  }
  await settle(state, 300, 3_000);

  let stepId = 0;
  /** @param {number} rate @param {number} durationMs @param {boolean} measured */
  const runStep = async (rate, durationMs, measured) => {
    stepId++;
    const interval = 1000 / rate;
    const perClient = Math.ceil(durationMs / interval) + 1;
    state.begin(stepId, perClient * total * o.clients);
    closes = 0;
    const cpu0 = process.cpuUsage();
    const server0 = o.serverCpu();
    const cores0 = coreTimes();
    const { sent, start, maxGap, sendErrors } = await sendPaced({
      step: stepId,
      count: total,
      interval,
      durationMs,
      cap: (p) => Math.max(0, Math.ceil((durationMs - p) / interval)),
      send: (i, text) => sockets[i]?.send(text),
      pad,
    });
    const sendEnd = performance.now();
    // CPU over the sending window, where the load is steady (the drain below would dilute it).
    const clientCpu = process.cpuUsage(cpu0);
    const serverCpu = o.serverCpu() - server0;
    const cores = coreBusyPct(cores0, coreTimes());
    const window = (sendEnd - start) / 1000;
    const sentTotal = sentIn(sent);
    const expected = sentTotal * o.clients;
    // Drain: until every delivery arrived, or the drain time is up.
    await state.drain(expected, sendEnd + o.drainMs);
    // The server's CPU per delivered message, over sending and draining (less noisy than throughput).
    const serverCpuAll = o.serverCpu() - server0;
    if (!measured) return undefined;
    const lat = sorted(state.latencies.subarray(0, Math.min(state.received, state.latencies.length)));
    const lost = Math.max(0, expected - state.received);
    const p99 = percentile(lat, 99);
    const step = {
      rate,
      sent: sentTotal,
      expected,
      received: state.received,
      /** Messages per received frame: 1 without batch frames. */
      perFrame: state.frames > 0 ? round(state.received / state.frames, 2) : Number.NaN,
      lost,
      outOfOrder: state.outOfOrder,
      errors: state.errors + sendErrors,
      closes,
      offeredPerSec: round(expected / (durationMs / 1000)),
      deliveredPerSec: round(Math.min(state.received, expected) / (durationMs / 1000)),
      p50: round(percentile(lat, 50), 2),
      p95: round(percentile(lat, 95), 2),
      p99: round(p99, 2),
      max: round(lat[lat.length - 1] ?? Number.NaN, 2),
      clientCpuPct: round(((clientCpu.user + clientCpu.system) / 1e6 / window) * 100),
      clientSysPct: round((clientCpu.system / 1e6 / window) * 100),
      serverCpuPct: round((serverCpu / window) * 100),
      coreBusyPct: cores,
      // Nothing received (a step swamped by other work): no figure, rather than all the CPU ÷ 1.
      serverCpuUsPerDelivery: state.received > 0 ? round((serverCpuAll * 1e6) / state.received, 2) : Number.NaN,
      maxTickGapMs: round(maxGap, 1),
      pass: false,
      foreignPct: Number.NaN,
      contended: false,
      /** @type {any} The contended failure this step measured again. */
      retryOf: undefined,
    };
    step.pass = lost === 0 && step.errors === 0 && step.closes === 0 && step.outOfOrder === 0 && p99 <= o.p99LimitMs;
    // CPU that neither the client nor the runtime used, on their own cores: other processes (and
    // kernel work not charged to either). Much of it means the step measured the machine's load.
    if (o.cores) {
      const busy = (/** @type {number[]} */ list) => Math.max(...list.map((c) => cores[c] ?? 0));
      step.foreignPct = Math.max(
        0,
        busy(o.cores.client) - step.clientCpuPct - o.cores.clientExtraPct,
        busy(o.cores.server) - step.serverCpuPct,
      );
      step.contended = step.foreignPct > CONTENDED_PCT;
    }
    o.log(
      `    ${String(rate).padStart(4)} msg/s/client: ${step.deliveredPerSec} delivered/s, p50 ${step.p50} p99 ${step.p99} ms, ` +
        `lost ${lost}, ${step.perFrame} msg/frame; cpu: client ${step.clientCpuPct}% (sys ${step.clientSysPct}%), server ${step.serverCpuPct}%, ` +
        `cores busy ${cores.join("/")}%${step.pass ? "" : "  ✗"}${step.contended ? ` (contended: ${step.foreignPct}% other work)` : ""}`,
    );
    return step;
  };

  /** @type {NonNullable<Awaited<ReturnType<typeof runStep>>>[]} */
  const steps = [];
  try {
    if (o.warmupMs > 0) {
      await runStep(o.rates[0] ?? 5, o.warmupMs, false);
      await settle(state, 200, 3_000);
    }
    let lastPass;
    let firstFail;
    // The listed rates, then doubling while every step passes, up to maxRate.
    const queue = [...o.rates];
    let retries = 0;
    /** A failed step whose cores were busy with other work is measured once more (twice per ramp at most). */
    const measure = async (/** @type {number} */ rate) => {
      const step = await runStep(rate, o.stepMs, true);
      if (!step || step.pass || !step.contended || retries >= 2) return step;
      retries++;
      await settle(state, 300, 5_000);
      const again = await runStep(rate, o.stepMs, true);
      if (again) again.retryOf = step;
      return again;
    };
    for (let rate = queue.shift(); rate !== undefined && rate <= o.maxRate; rate = queue.shift()) {
      const step = await measure(rate);
      if (!step) break;
      steps.push(step);
      if (!step.pass) {
        firstFail = rate;
        await settle(state, 300, 5_000);
        break;
      }
      lastPass = rate;
      if (o.alive && !o.alive()) break;
      if (queue.length === 0 && rate * 2 <= o.maxRate) queue.push(rate * 2);
    }
    const refine = o.alive && !o.alive() ? 0 : o.refine;
    for (let k = 0; k < refine && lastPass !== undefined && firstFail !== undefined; k++) {
      // Whole msg/s for the usual ladder (57, 113); two significant digits for a big room's (0.57).
      const exact = Math.sqrt(lastPass * firstFail);
      const mid = exact >= 10 ? Math.round(exact) : Number(exact.toPrecision(2));
      if (mid <= lastPass || mid >= firstFail) break;
      const step = await measure(mid);
      if (!step) break;
      steps.push(step);
      if (step.pass) lastPass = mid;
      else {
        firstFail = mid;
        await settle(state, 300, 5_000);
      }
    }
  } finally {
    closes = 0;
    for (const ws of sockets) ws?.removeAllListeners("close");
    await closeAll(sockets, 5_000);
  }
  const passing = steps.filter((s) => s.pass);
  return {
    steps,
    capacity: passing.reduce((best, s) => Math.max(best, s.deliveredPerSec), 0),
    capacityRate: passing.reduce((best, s) => Math.max(best, s.rate), 0),
    // Every step passed: the server can do more than the ramp asked; the capacity is a lower bound.
    censored: steps.length > 0 && steps.every((s) => s.pass),
  };
}

/**
 * Waits until no relayed frame has arrived for `quietMs` (at most `maxMs`).
 * @param {Deliveries} state @param {number} quietMs @param {number} maxMs
 */
async function settle(state, quietMs, maxMs) {
  const deadline = performance.now() + maxMs;
  const start = performance.now();
  while (performance.now() < deadline) {
    const last = Math.max(state.lastFrameAt, start);
    if (performance.now() - last >= quietMs) return;
    await sleep(20);
  }
}

/**
 * The fan-out settings of one shape: its rooms and clients, its ladder (or the options'), and the
 * options' steps.
 * @param {ReturnType<typeof import("./bench-options.mjs").benchOptions>["options"]} options
 * @param {{ rooms: number, clients: number, rates?: number[], maxRate?: number }} shape
 */
export function rampOf(options, shape) {
  return {
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
  };
}
