/**
 * The bench's message, both ends: every sender sends `{"type":"message","data":{"s":…,"c":…,"n":…,"t":…}}`
 * (step, sender, its sequence number, the send time in µs) at a fixed rate, its senders' phases
 * staggered; every server relays it (edge-rooms inside its own `message` frame, or several in a batch
 * frame). A receiver finds each one by a byte marker and reads the four numbers straight from the
 * buffer: no JSON.parse per frame. Used by the fan-out (fanout.mjs) and the room-size sweep
 * (sweep-room.mjs).
 */
import { sleep } from "../../scripts/lib/processes.mjs";

const MARKER = Buffer.from('"data":{"s":');
const ERROR_MARKER = Buffer.from('"type":"error"');
const COLON = 58;

/** Where readUint stopped: the first byte after the number. */
let cursor = 0;
/** Reads the next unsigned decimal integer at or after `from`. @param {Buffer} buf @param {number} from */
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
 * What the receivers got of the step being measured; messages of other steps (a warm-up, an earlier
 * overloaded step) are counted as stale and otherwise ignored.
 */
export class Deliveries {
  id = -1;
  received = 0;
  /** Frames that carried this step's messages (fewer than `received` with batch frames). */
  frames = 0;
  stale = 0;
  outOfOrder = 0;
  errors = 0;
  latencies = new Float64Array(0);
  /** When the last relayed message of any step arrived. */
  lastFrameAt = 0;
  /** Last `n` seen per (receiver, sender). */
  lastN;

  /** @param {number} receivers @param {number} senders Senders per room: `c` counts modulo this. */
  constructor(receivers, senders) {
    this.senders = senders;
    this.lastN = new Int32Array(receivers * senders);
  }

  /** Starts counting step `id` afresh, with room for `capacity` latencies. @param {number} id @param {number} capacity */
  begin(id, capacity) {
    this.id = id;
    this.received = 0;
    this.frames = 0;
    this.stale = 0;
    this.outOfOrder = 0;
    this.errors = 0;
    this.lastN.fill(-1);
    this.latencies = new Float64Array(capacity);
  }

  /** Counts the messages of a frame received by socket `receiver` (an error frame as an error). @param {Buffer} data @param {number} receiver */
  take(data, receiver) {
    const now = performance.now();
    let at = data.indexOf(MARKER);
    if (at < 0) {
      if (data.indexOf(ERROR_MARKER) >= 0) this.errors++;
      return;
    }
    // A batch frame (edge-rooms with ?batch=1) holds several messages, in order: each one counts.
    const before = this.received;
    while (at >= 0) {
      const s = readUint(data, at + MARKER.length);
      const c = readUint(data, data.indexOf(COLON, cursor) + 1);
      const n = readUint(data, data.indexOf(COLON, cursor) + 1);
      const t = readUint(data, data.indexOf(COLON, cursor) + 1);
      this.lastFrameAt = now;
      if (s !== this.id) this.stale++;
      else {
        if (this.received < this.latencies.length) this.latencies[this.received] = now - t / 1000;
        this.received++;
        const key = receiver * this.senders + (c % this.senders);
        if (n <= (this.lastN[key] ?? -1)) this.outOfOrder++;
        this.lastN[key] = n;
      }
      at = data.indexOf(MARKER, cursor);
    }
    if (this.received > before) this.frames++;
  }

  /** Waits until `expected` messages arrived or `deadline` (a `performance.now()` time) passed. @param {number} expected @param {number} deadline */
  async drain(expected, deadline) {
    while (this.received < expected && performance.now() < deadline) await sleep(5);
  }
}

/**
 * Sends step `step`'s messages: sender `i` of `count` starts at phase `i / count` of an interval and
 * sends one message every `interval` ms (open loop, stamped at the actual send) until `durationMs`,
 * at most `cap(phase)` in all, through `send(i, text)`.
 * @param {object} o
 * @param {number} o.step
 * @param {number} o.count
 * @param {number} o.interval
 * @param {number} o.durationMs
 * @param {(phase: number) => number} o.cap
 * @param {(i: number, text: string) => void} o.send Throws when the socket cannot send.
 * @param {string} [o.pad] Appended to each message's data.
 * @returns {Promise<{ sent: Int32Array, start: number, maxGap: number, sendErrors: number }>}
 */
export async function sendPaced({ step, count, interval, durationMs, cap, send, pad = "" }) {
  const sent = new Int32Array(count);
  const phase = Float64Array.from({ length: count }, (_, i) => (i / count) * interval);
  const caps = Int32Array.from(phase, cap);
  const prefix = `{"type":"message","data":{"s":${step},"c":`;
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
      for (let i = 0; i < count; i++) {
        const p = phase[i] ?? 0;
        if (until < p) continue;
        const due = Math.min(caps[i] ?? 0, Math.floor((until - p) / interval) + 1);
        while ((sent[i] ?? 0) < due) {
          const n = sent[i] ?? 0;
          sent[i] = n + 1;
          const t = Math.round(performance.now() * 1000);
          try {
            send(i, `${prefix}${i},"n":${n},"t":${t}${pad}}}`);
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
  return { sent, start, maxGap, sendErrors };
}

/** Messages sent in all. @param {Int32Array} sent */
export function total(sent) {
  let sum = 0;
  for (const n of sent) sum += n;
  return sum;
}
