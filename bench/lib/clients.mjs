/**
 * The client side of the bench: real `ws` sockets, kept cheap because they share the machine with
 * the server. No schema validation and no JSON.parse per received frame: a delivered message is found
 * by a byte marker and its four numbers are read straight from the buffer.
 *
 * Every loop is bounded in count and in time, and every wait has a deadline.
 */
import { readFileSync } from "node:fs";
import WebSocket from "ws";
import { sleep } from "./wrangler.mjs";

/** No compression (the same for all three servers), no UTF-8 check of received frames. */
const WS_OPTIONS = { perMessageDeflate: false, skipUTF8Validation: true, handshakeTimeout: 10_000 };

/** A step is "contended" when other work took more than this % of the client's or the server's CPU. */
const CONTENDED_PCT = 30;

/** What the client sends and every server relays: `{"type":"message","data":{"s":…,"c":…,"n":…,"t":…}}`. */
const MARKER = Buffer.from('"data":{"s":');
const ERROR_MARKER = Buffer.from('"type":"error"');
const WELCOME_MARKER = Buffer.from('"type":"welcome"');
const HEARTBEAT_MARKER = Buffer.from('{"type":"heartbeat"');
/** edge-rooms' heartbeats are ~70 bytes; nothing else starts with the marker. */
const HEARTBEAT_MAX_BYTES = 128;
const COLON = 58;

/**
 * A server under test, as the client sees it.
 * @typedef {object} Target
 * @property {string} name
 * @property {(room: string) => string} url WebSocket URL of a room.
 * @property {(client: number) => Record<string, string> | undefined} headers Upgrade headers of client number `client`.
 */

/**
 * Opens `count` sockets, at most `concurrency` handshakes in flight, and waits for each one's first
 * frame (the welcome). Sockets that fail are counted, not retried.
 * @param {object} o
 * @param {Target} o.target
 * @param {number} o.count
 * @param {number} o.concurrency
 * @param {(i: number) => string} o.roomOf
 * @param {number} [o.firstClient] Index of the first client (selects its token).
 * @param {number} o.timeoutMs Per connection.
 * @param {(ws: WebSocket, i: number) => void} [o.onOpen] Called at creation, before any frame.
 */
export async function openMany({ target, count, concurrency, roomOf, firstClient = 0, timeoutMs, onOpen }) {
  /** @type {(WebSocket | undefined)[]} */
  const sockets = new Array(count).fill(undefined);
  const latencies = new Float64Array(count);
  /** @type {Map<string, number>} */
  const failures = new Map();
  let ok = 0;
  let failed = 0;
  let next = 0;
  let inFlight = 0;
  const t0 = performance.now();
  let lastWelcome = t0;
  await new Promise((resolve) => {
    if (count === 0) {
      resolve(undefined);
      return;
    }
    const launch = () => {
      while (inFlight < concurrency && next < count) {
        const i = next++;
        inFlight++;
        const start = performance.now();
        const ws = new WebSocket(target.url(roomOf(i)), {
          ...WS_OPTIONS,
          headers: target.headers(firstClient + i),
        });
        // Every client echoes heartbeats, as the edge-rooms protocol asks (the others send none).
        ws.on("message", (/** @type {Buffer} */ data) => {
          if (data.length <= HEARTBEAT_MAX_BYTES && data.indexOf(HEARTBEAT_MARKER) === 0)
            ws.send(data, { binary: false });
        });
        onOpen?.(ws, i);
        let settled = false;
        const finish = (/** @type {string | undefined} */ error) => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          inFlight--;
          if (error === undefined) {
            const now = performance.now();
            latencies[ok++] = now - start;
            lastWelcome = now;
            sockets[i] = ws;
          } else {
            failed++;
            failures.set(error, (failures.get(error) ?? 0) + 1);
            ws.terminate();
          }
          if (ok + failed === count) resolve(undefined);
          else launch();
        };
        const timer = setTimeout(() => finish("timeout"), timeoutMs);
        ws.once("message", (/** @type {Buffer} */ data) =>
          finish(data.indexOf(WELCOME_MARKER) >= 0 ? undefined : "first frame is not a welcome"),
        );
        ws.once("error", (error) => finish(error.message.slice(0, 80)));
        ws.once("close", (code) => finish(`closed ${code}`));
      }
    };
    launch();
  });
  const seconds = (lastWelcome - t0) / 1000;
  return {
    sockets,
    ok,
    failed,
    failures: Object.fromEntries(failures),
    latencies: latencies.subarray(0, ok),
    seconds,
    perSecond: ok > 0 && seconds > 0 ? ok / seconds : 0,
  };
}

/**
 * Closes sockets with 1000 and waits (bounded) for the server's close frames; terminates stragglers.
 * @param {(WebSocket | undefined)[]} sockets
 * @param {number} timeoutMs
 */
export async function closeAll(sockets, timeoutMs) {
  const open = /** @type {WebSocket[]} */ (
    sockets.filter((ws) => ws !== undefined && ws.readyState !== WebSocket.CLOSED)
  );
  const closed = open.map(
    (ws) =>
      new Promise((resolve) => {
        ws.once("close", resolve);
        try {
          ws.close(1000, "bench done");
        } catch {
          ws.terminate();
        }
      }),
  );
  const deadline = sleep(timeoutMs).then(() => "timeout");
  await Promise.race([Promise.all(closed), deadline]);
  let terminated = 0;
  for (const ws of open) {
    if (ws.readyState !== WebSocket.CLOSED) {
      ws.terminate();
      terminated++;
    }
  }
  return { closed: open.length, terminated };
}

/** Sorted copy of a sample; percentiles by nearest rank. @param {Float64Array} values */
export function sorted(values) {
  return Float64Array.from(values).sort();
}

/** @param {Float64Array} sortedValues @param {number} p in [0, 100] */
export function percentile(sortedValues, p) {
  if (sortedValues.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sortedValues.length);
  return sortedValues[Math.min(sortedValues.length - 1, Math.max(0, rank - 1))] ?? Number.NaN;
}

/**
 * Busy and total time of each CPU so far, from /proc/stat (every process's work, the kernel's
 * included: the truest sign of which side saturates). Empty where /proc/stat cannot be read.
 * @returns {{ busy: number, total: number }[]}
 */
export function coreTimes() {
  try {
    return readFileSync("/proc/stat", "utf8")
      .split("\n")
      .filter((l) => /^cpu\d+ /.test(l))
      .map((l) => {
        const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = l
          .trim()
          .split(/\s+/)
          .slice(1)
          .map(Number);
        const busy = user + nice + system + irq + softirq + steal;
        return { busy, total: busy + idle + iowait };
      });
  } catch {
    return [];
  }
}

/** Busy % of each CPU between two `coreTimes()` readings. @param {ReturnType<typeof coreTimes>} a @param {ReturnType<typeof coreTimes>} b */
export function coreBusyPct(a, b) {
  return b.map((t, i) => {
    const before = a[i] ?? { busy: 0, total: 0 };
    const total = t.total - before.total;
    return total > 0 ? Math.round(((t.busy - before.busy) / total) * 100) : Number.NaN;
  });
}

// -- fan-out ----------------------------------------------------------------------------------------

/**
 * State of the step being measured; frames of other steps (warm-up, an earlier overloaded step) are
 * counted as stale and otherwise ignored.
 */
class StepState {
  id = -1;
  received = 0;
  /** Frames that carried this step's messages (fewer than `received` with batch frames). */
  frames = 0;
  stale = 0;
  outOfOrder = 0;
  errors = 0;
  unexpectedCloses = 0;
  latencies = new Float64Array(0);
  /** When the last relayed frame of any step arrived. */
  lastFrameAt = 0;
  /** Last `n` seen per (receiver, sender within the room). */
  lastN = new Int32Array(0);
}

/** Reads the next unsigned decimal integer at or after `from`. */
let cursor = 0;
/** @param {Buffer} buf @param {number} from */
function readUint(buf, from) {
  let i = from;
  let value = 0;
  let ch = buf[i];
  while (ch !== undefined && ch >= 48 && ch <= 57) {
    value = value * 10 + (ch - 48);
    ch = buf[++i];
  }
  cursor = i;
  return value;
}

/**
 * Runs one fan-out scenario: `rooms` × `clients` sockets, each sending at a fixed rate that is stepped
 * up until p99 passes the limit or anything is lost, then bisected `refine` times.
 * @param {object} o
 * @param {Target} o.target
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
  const state = new StepState();
  state.lastN = new Int32Array(total * o.clients);
  const pad = o.padBytes > 0 ? `,"p":"${"x".repeat(o.padBytes)}"` : "";

  const onFrame = (/** @type {Buffer} */ data, /** @type {number} */ receiver) => {
    const now = performance.now();
    let at = data.indexOf(MARKER);
    if (at < 0) {
      if (data.indexOf(ERROR_MARKER) >= 0) state.errors++;
      return;
    }
    // A batch frame (edge-rooms with ?batch=1) holds several messages, in order: each one counts.
    const before = state.received;
    while (at >= 0) {
      const s = readUint(data, at + MARKER.length);
      const c = readUint(data, data.indexOf(COLON, cursor) + 1);
      const n = readUint(data, data.indexOf(COLON, cursor) + 1);
      const t = readUint(data, data.indexOf(COLON, cursor) + 1);
      state.lastFrameAt = now;
      if (s !== state.id) state.stale++;
      else {
        if (state.received < state.latencies.length) state.latencies[state.received] = now - t / 1000;
        state.received++;
        const key = receiver * o.clients + (c % o.clients);
        if (n <= (state.lastN[key] ?? -1)) state.outOfOrder++;
        state.lastN[key] = n;
      }
      at = data.indexOf(MARKER, cursor);
    }
    if (state.received > before) state.frames++;
  };

  const opened = await openMany({
    target: o.target,
    count: total,
    concurrency: 50,
    roomOf: (i) => `${o.runTag}-${Math.floor(i / o.clients)}`,
    timeoutMs: 15_000,
    onOpen: (ws, i) => {
      ws.on("message", (/** @type {Buffer} */ data) => onFrame(data, i));
      ws.on("close", () => {
        state.unexpectedCloses++;
      });
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
    state.id = stepId;
    state.received = 0;
    state.frames = 0;
    state.stale = 0;
    state.outOfOrder = 0;
    state.errors = 0;
    state.unexpectedCloses = 0;
    state.lastN.fill(-1);
    state.latencies = new Float64Array(perClient * total * o.clients);
    const sent = new Int32Array(total);
    const phase = Float64Array.from({ length: total }, (_, i) => (i / total) * interval);
    const cap = Int32Array.from(phase, (p) => Math.max(0, Math.ceil((durationMs - p) / interval)));
    const prefix = `{"type":"message","data":{"s":${stepId},"c":`;
    const cpu0 = process.cpuUsage();
    const server0 = o.serverCpu();
    const cores0 = coreTimes();
    const start = performance.now();
    let maxGap = 0;
    let lastTick = start;
    let sendErrors = 0;
    await new Promise((resolve) => {
      const tick = () => {
        const now = performance.now();
        maxGap = Math.max(maxGap, now - lastTick);
        lastTick = now;
        const elapsed = now - start;
        const until = Math.min(elapsed, durationMs);
        for (let i = 0; i < total; i++) {
          const p = phase[i] ?? 0;
          if (until < p) continue;
          const due = Math.min(cap[i] ?? 0, Math.floor((until - p) / interval) + 1);
          const ws = sockets[i];
          while ((sent[i] ?? 0) < due) {
            const n = sent[i] ?? 0;
            sent[i] = n + 1;
            const t = Math.round(performance.now() * 1000);
            try {
              ws?.send(`${prefix}${i},"n":${n},"t":${t}${pad}}}`);
            } catch {
              sendErrors++;
            }
          }
        }
        if (elapsed >= durationMs) resolve(undefined);
        else setTimeout(tick, 1);
      };
      tick();
    });
    const sendEnd = performance.now();
    // CPU over the sending window, where the load is steady (the drain below would dilute it).
    const clientCpu = process.cpuUsage(cpu0);
    const serverCpu = o.serverCpu() - server0;
    const cores = coreBusyPct(cores0, coreTimes());
    const window = (sendEnd - start) / 1000;
    let sentTotal = 0;
    for (const n of sent) sentTotal += n;
    const expected = sentTotal * o.clients;
    // Drain: until every delivery arrived, or nothing arrives for a while, or the drain time is up.
    const drainDeadline = sendEnd + o.drainMs;
    while (state.received < expected && performance.now() < drainDeadline) await sleep(5);
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
      closes: state.unexpectedCloses,
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
    state.unexpectedCloses = 0;
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
 * @param {StepState} state @param {number} quietMs @param {number} maxMs
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

/** @param {number} x @param {number} [digits] */
export function round(x, digits = 0) {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
