/**
 * One big room for the room-size sweep (`npm run bench -- --sweep`, bench/README.md): N sockets, of
 * which the first `senders` also send at a fixed rate; every socket receives every message (the
 * sender's own included). Moved sockets (close 4307, a sharded room growing) reconnect at once.
 * Like bench/lib/clients.mjs: no JSON.parse per frame, the four numbers read from the bytes.
 *
 * Every loop and wait is bounded.
 */
import WebSocket from "ws";
import { percentile, round, sorted } from "./clients.mjs";
import { sleep } from "./wrangler.mjs";

const WS_OPTIONS = { perMessageDeflate: false, skipUTF8Validation: true, handshakeTimeout: 15_000 };
const MARKER = Buffer.from('"data":{"s":');
const WELCOME = Buffer.from('"type":"welcome"');
const HEARTBEAT = Buffer.from('{"type":"heartbeat"');
const ERROR = Buffer.from('"type":"error"');
const COLON = 58;
/** The close code of a sharded room's move: reconnect at once (docs/scaling.md). */
const MOVED = 4307;

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

export class SweepRoom {
  /**
   * @param {object} o
   * @param {(i: number) => string} o.url
   * @param {(i: number) => Record<string, string> | undefined} o.headers
   * @param {number} o.n Sockets.
   * @param {number} o.senders The first `senders` sockets send.
   */
  constructor(o) {
    this.o = o;
    /** @type {(WebSocket | undefined)[]} */
    this.sockets = new Array(o.n).fill(undefined);
    this.moved = 0;
    this.unexpectedCloses = 0;
    this.failed = 0;
    this.lastCloseAt = 0;
    /** @type {number[]} */
    this.toReconnect = [];
    this.step = 0;
    this.received = 0;
    this.frames = 0;
    this.echoes = 0;
    this.errors = 0;
    this.outOfOrder = 0;
    this.latencies = new Float64Array(0);
    this.lastN = new Int32Array(o.n * o.senders);
    this.closing = false;
  }

  /** @param {number} i */
  #connect(i) {
    return new Promise((resolve) => {
      const ws = new WebSocket(this.o.url(i), { ...WS_OPTIONS, headers: this.o.headers(i) });
      let welcomed = false;
      const timer = setTimeout(() => done(false), 20_000);
      const done = (/** @type {boolean} */ ok) => {
        if (welcomed) return;
        welcomed = true;
        clearTimeout(timer);
        if (ok) this.sockets[i] = ws;
        else {
          this.failed++;
          ws.terminate();
        }
        resolve(ok);
      };
      ws.on("message", (/** @type {Buffer} */ data) => {
        if (!welcomed) {
          done(data.indexOf(WELCOME) >= 0);
          return;
        }
        this.frames++;
        if (data.length <= 128 && data.indexOf(HEARTBEAT) === 0) {
          this.echoes++;
          ws.send(data, { binary: false });
          return;
        }
        this.#onFrame(data, i);
      });
      ws.once("error", () => done(false));
      ws.once("close", (code) => {
        if (!welcomed) {
          done(false);
          return;
        }
        if (this.closing || this.sockets[i] !== ws) return;
        this.sockets[i] = undefined;
        this.lastCloseAt = performance.now();
        if (code === MOVED) {
          this.moved++;
          this.toReconnect.push(i);
        } else this.unexpectedCloses++;
      });
    });
  }

  /** @param {Buffer} data @param {number} receiver */
  #onFrame(data, receiver) {
    const now = performance.now();
    let at = data.indexOf(MARKER);
    if (at < 0) {
      if (data.indexOf(ERROR) >= 0) this.errors++;
      return;
    }
    while (at >= 0) {
      const s = readUint(data, at + MARKER.length);
      const c = readUint(data, data.indexOf(COLON, cursor) + 1);
      const n = readUint(data, data.indexOf(COLON, cursor) + 1);
      const t = readUint(data, data.indexOf(COLON, cursor) + 1);
      if (s === this.step) {
        if (this.received < this.latencies.length) this.latencies[this.received] = now - t / 1000;
        this.received++;
        const key = receiver * this.o.senders + (c % this.o.senders);
        if (n <= (this.lastN[key] ?? -1)) this.outOfOrder++;
        this.lastN[key] = n;
      }
      at = data.indexOf(MARKER, cursor);
    }
  }

  /**
   * Sockets the server sent a close frame to. The runtime does not end the TCP connection after the
   * close handshake at once, so `ws` would emit `close` only after its 30 s timeout: the frame's code
   * (`ws` keeps it in `_closeCode`) is read here, and the socket is dropped.
   */
  #reapClosing() {
    for (let i = 0; i < this.sockets.length; i++) {
      const ws = /** @type {any} */ (this.sockets[i]);
      if (ws === undefined || ws.readyState !== WebSocket.CLOSING || ws._closeFrameReceived !== true) continue;
      this.sockets[i] = undefined;
      this.lastCloseAt = performance.now();
      ws.terminate();
      if (ws._closeCode === MOVED) {
        this.moved++;
        this.toReconnect.push(i);
      } else this.unexpectedCloses++;
    }
  }

  /**
   * Opens `indices` with at most `concurrency` handshakes in flight, none started after `deadline`.
   * @param {number[]} indices @param {number} concurrency @param {number} deadline
   */
  async #openAll(indices, concurrency, deadline) {
    let next = 0;
    const worker = async () => {
      while (next < indices.length && performance.now() < deadline) {
        const i = /** @type {number} */ (indices[next++]);
        await this.#connect(i);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, indices.length) }, worker));
  }

  /**
   * Opens every socket, then reconnects moved ones until nothing closed for `quietMs`; gives up
   * after `fillMs` in all (then `filled` is false and `opened` says how far it got).
   * @returns {Promise<{ seconds: number, moved: number, failed: number, filled: boolean, opened: number }>}
   */
  async open(concurrency = 50, fillMs = 300_000, quietMs = 2_000) {
    const t0 = performance.now();
    const deadline = t0 + fillMs;
    await this.#openAll(
      Array.from({ length: this.o.n }, (_, i) => i),
      concurrency,
      deadline,
    );
    while (performance.now() < deadline) {
      this.#reapClosing();
      if (this.toReconnect.length > 0) {
        const batch = this.toReconnect.splice(0);
        await this.#openAll(batch, concurrency, deadline);
        continue;
      }
      if (performance.now() - Math.max(this.lastCloseAt, t0) >= quietMs) break;
      await sleep(50);
    }
    const opened = this.openCount;
    const seconds = round((performance.now() - t0) / 1000, 1);
    return { seconds, moved: this.moved, failed: this.failed, filled: opened === this.o.n, opened };
  }

  /** How many sockets are open now. */
  get openCount() {
    return this.sockets.filter((ws) => ws !== undefined && ws.readyState === WebSocket.OPEN).length;
  }

  /**
   * One measured step: each sender sends `rate` msg/s for `seconds`, then the last deliveries drain.
   * `receivers` is how many sockets are open and should receive each message.
   * @param {object} o
   * @param {number} o.rate Per sender.
   * @param {number} o.seconds
   * @param {number} o.drainMs
   * @param {() => number} o.serverCpu
   * @param {() => Promise<Record<string, number> | undefined>} o.usage Reads (and zeroes) the server's counters.
   */
  async measure(o) {
    this.#reapClosing();
    const receivers = this.openCount;
    const senders = this.o.senders;
    this.step++;
    this.received = 0;
    this.frames = 0;
    this.echoes = 0;
    this.errors = 0;
    this.outOfOrder = 0;
    this.lastN.fill(-1);
    const perSender = Math.ceil(o.rate * o.seconds) + 1;
    this.latencies = new Float64Array(perSender * senders * receivers);
    const sent = new Int32Array(senders);
    const interval = 1000 / o.rate;
    const durationMs = o.seconds * 1000;
    const prefix = `{"type":"message","data":{"s":${this.step},"c":`;
    await o.usage();
    const cpu0 = o.serverCpu();
    const client0 = process.cpuUsage();
    const start = performance.now();
    await new Promise((resolve) => {
      const tick = () => {
        const elapsed = performance.now() - start;
        const until = Math.min(elapsed, durationMs);
        for (let c = 0; c < senders; c++) {
          const phase = (c / senders) * interval;
          if (until < phase) continue;
          const due = Math.min(perSender, Math.floor((until - phase) / interval) + 1);
          while ((sent[c] ?? 0) < due) {
            const n = sent[c] ?? 0;
            sent[c] = n + 1;
            const t = Math.round(performance.now() * 1000);
            try {
              this.sockets[c]?.send(`${prefix}${c},"n":${n},"t":${t}}}`);
            } catch {
              this.errors++;
            }
          }
        }
        if (elapsed >= durationMs) resolve(undefined);
        else setTimeout(tick, 1);
      };
      tick();
    });
    let sentTotal = 0;
    for (const n of sent) sentTotal += n;
    const expected = sentTotal * receivers;
    const drainEnd = performance.now() + o.drainMs;
    while (this.received < expected && performance.now() < drainEnd) await sleep(5);
    const end = performance.now();
    const serverCpu = o.serverCpu() - cpu0;
    const client = process.cpuUsage(client0);
    // Counters after a short pause, so the last acks, heartbeats and commits are in.
    await sleep(200);
    const usage = await o.usage();
    const lat = sorted(this.latencies.subarray(0, Math.min(this.received, this.latencies.length)));
    const seconds = (end - start) / 1000;
    return {
      receivers,
      ratePerSender: o.rate,
      roomRate: round(o.rate * senders, 2),
      sent: sentTotal,
      expected,
      received: this.received,
      lost: Math.max(0, expected - this.received),
      outOfOrder: this.outOfOrder,
      errors: this.errors,
      unexpectedCloses: this.unexpectedCloses,
      deliveredPerSec: round(this.received / o.seconds),
      p50: round(percentile(lat, 50), 2),
      p99: round(percentile(lat, 99), 2),
      max: round(lat[lat.length - 1] ?? Number.NaN, 2),
      serverCpuPct: round((serverCpu / seconds) * 100),
      clientCpuPct: round(((client.user + client.system) / 1e6 / seconds) * 100),
      cpuUsPerDelivery: this.received > 0 ? round((serverCpu * 1e6) / this.received, 2) : Number.NaN,
      cpuUsPerMessage: sentTotal > 0 ? round((serverCpu * 1e6) / sentTotal, 1) : Number.NaN,
      framesOut: this.frames,
      heartbeatEchoes: this.echoes,
      usage,
    };
  }

  /** Closes sockets `from`…`to − 1` (all by default) with 1000; terminates stragglers. */
  async close(from = 0, to = this.o.n, timeoutMs = 10_000) {
    if (from === 0 && to === this.o.n) this.closing = true;
    const open = [];
    for (let i = from; i < to; i++) {
      const ws = this.sockets[i];
      this.sockets[i] = undefined;
      if (ws !== undefined && ws.readyState !== WebSocket.CLOSED) open.push(ws);
    }
    for (const ws of open) {
      try {
        ws.close(1000, "bench done");
      } catch {
        ws.terminate();
      }
    }
    // Until the server answered each close (its close frame; it may keep the TCP connection a while).
    const deadline = performance.now() + timeoutMs;
    const answered = (/** @type {any} */ ws) => ws.readyState === WebSocket.CLOSED || ws._closeFrameReceived === true;
    while (performance.now() < deadline && !open.every(answered)) await sleep(20);
    for (const ws of open) if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
  }
}
