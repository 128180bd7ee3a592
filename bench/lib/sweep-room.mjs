/**
 * One big room for the room-size sweep (`npm run bench -- --sweep`, bench/README.md): N sockets, of
 * which the first `senders` also send at a fixed rate; every socket receives every message (the
 * sender's own included). Moved sockets (close 4307, a sharded room growing) reconnect at once.
 * The sockets are bench/lib/clients.mjs's and the messages bench/lib/deliveries.mjs's.
 *
 * Every loop and wait is bounded.
 */
import WebSocket from "ws";
import { sleep } from "../../scripts/lib/processes.mjs";
import { closeDone, dial } from "./clients.mjs";
import { Deliveries, sendPaced, total } from "./deliveries.mjs";
import { percentile, round, sorted } from "./stats.mjs";

/** The close code of a sharded room's move: reconnect at once (docs/scaling.md). */
const MOVED = 4307;

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
    this.deliveries = new Deliveries(o.n, o.senders);
    /** Frames received after the welcomes, heartbeats included. */
    this.frames = 0;
    this.echoes = 0;
    this.closing = false;
  }

  /** @param {number} i @returns {Promise<boolean>} */
  async #connect(i) {
    const { ws, welcomed } = dial({
      url: this.o.url(i),
      headers: this.o.headers(i),
      handshakeTimeoutMs: 15_000,
      timeoutMs: 20_000,
      hooks: {
        onFrame: (data, isHeartbeat) => {
          this.frames++;
          if (isHeartbeat) this.echoes++;
          else this.deliveries.take(data, i);
        },
        onClose: (code) => {
          if (!this.closing && this.sockets[i] === ws) this.#lost(i, code);
        },
      },
    });
    const isOpen = (await welcomed) === undefined;
    if (isOpen) this.sockets[i] = ws;
    else this.failed++;
    return isOpen;
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
      this.#lost(i, ws._closeCode);
      ws.terminate();
    }
  }

  /** Socket `i` closed with `code`: a moved one is opened again. @param {number} i @param {number} code */
  #lost(i, code) {
    this.sockets[i] = undefined;
    this.lastCloseAt = performance.now();
    if (code === MOVED) {
      this.moved++;
      this.toReconnect.push(i);
    } else this.unexpectedCloses++;
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
    this.frames = 0;
    this.echoes = 0;
    const perSender = Math.ceil(o.rate * o.seconds) + 1;
    const d = this.deliveries;
    d.begin(this.step, perSender * senders * receivers);
    const interval = 1000 / o.rate;
    const durationMs = o.seconds * 1000;
    await o.usage();
    const cpu0 = o.serverCpu();
    const client0 = process.cpuUsage();
    const { sent, start, sendErrors } = await sendPaced({
      step: this.step,
      count: senders,
      interval,
      durationMs,
      cap: () => perSender,
      send: (c, text) => this.sockets[c]?.send(text),
    });
    const sentTotal = total(sent);
    const expected = sentTotal * receivers;
    await d.drain(expected, performance.now() + o.drainMs);
    const end = performance.now();
    const serverCpu = o.serverCpu() - cpu0;
    const client = process.cpuUsage(client0);
    // Counters after a short pause, so the last acks, heartbeats and commits are in.
    await sleep(200);
    const usage = await o.usage();
    const lat = sorted(d.latencies.subarray(0, Math.min(d.received, d.latencies.length)));
    const seconds = (end - start) / 1000;
    return {
      receivers,
      ratePerSender: o.rate,
      roomRate: round(o.rate * senders, 2),
      sent: sentTotal,
      expected,
      received: d.received,
      lost: Math.max(0, expected - d.received),
      outOfOrder: d.outOfOrder,
      errors: d.errors + sendErrors,
      unexpectedCloses: this.unexpectedCloses,
      deliveredPerSec: round(d.received / o.seconds),
      p50: round(percentile(lat, 50), 2),
      p99: round(percentile(lat, 99), 2),
      max: round(lat[lat.length - 1] ?? Number.NaN, 2),
      serverCpuPct: round((serverCpu / seconds) * 100),
      clientCpuPct: round(((client.user + client.system) / 1e6 / seconds) * 100),
      cpuUsPerDelivery: d.received > 0 ? round((serverCpu * 1e6) / d.received, 2) : Number.NaN,
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
    for (const ws of open) closeDone(ws);
    // Until the server answered each close (its close frame; it may keep the TCP connection a while).
    const deadline = performance.now() + timeoutMs;
    const answered = (/** @type {any} */ ws) => ws.readyState === WebSocket.CLOSED || ws._closeFrameReceived === true;
    while (performance.now() < deadline && !open.every(answered)) await sleep(20);
    for (const ws of open) if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
  }
}
