/**
 * One child process of the shard soak (test/e2e/shard-soak.e2e.ts): a share of the room's clients,
 * each a real `ws` socket asking for batch frames (as edge-rooms/client does). A client records
 * every seq it gets over all its sockets; when a socket closes (moved 4307, a reset's 1006, a
 * restart) it reconnects with `?since=<the last seq it saw>` and resends, with the same ids, the
 * messages it sent that were not acked (as edge-rooms/client does). Driven over IPC by the parent:
 *
 *   start {baseUrl, secret, room, users, senders}   → connected {open} as sockets open
 *   send {intervalMs, max} / stopSending            → senders send `<sub>-<i>` messages, paced
 *   progress {seq}                                  → progress {open, atLeast, sent, acked, unacked}
 *   finish {seq, timeoutMs}                         → result {...counts, ids: every acked id}
 *
 * Plain ESM (run with `node`), so that the parent can fork several without a TypeScript loader.
 */
import { SignJWT } from "jose";
import WebSocket from "ws";

const CONNECT_CONCURRENCY = 64;
/** Echo `heartbeat` frames, as every real client must; SOAK_ECHO_HEARTBEATS=0: don't (clients are then closed 4408). */
const ECHO_HEARTBEATS = process.env.SOAK_ECHO_HEARTBEATS !== "0";
const RESEND_AFTER_MS = 3000;
/** Unacked messages a sender keeps in flight at most (below the per-connection rate burst). */
const MAX_IN_FLIGHT = 16;

/** @type {{baseUrl: string, secret: string, room: string} | undefined} */
let setup;
/** @type {Client[]} */
const clients = [];
let sending = false;
/** Set once the verdict is taken: closes are then the end, not something to resume from. */
let stopping = false;
let sendMax = 0;
/** @type {ReturnType<typeof setInterval> | undefined} */
let sendTimer;

const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Client {
  /** @param {string} sub @param {boolean} isSender */
  constructor(sub, isSender) {
    this.sub = sub;
    this.isSender = isSender;
    /** @type {WebSocket | undefined} */
    this.ws = undefined;
    this.isOpen = false;
    /** seen[seq] = 1 once a frame with that seq arrived. */
    this.seen = new Uint8Array(1024);
    this.max = 0;
    this.distinct = 0;
    this.frames = 0;
    this.duplicates = 0;
    this.outOfOrder = 0;
    this.reconnects = 0;
    /** @type {Record<string, number>} failed connect attempts by outcome ("refused 503", "error ECONNREFUSED") */
    this.refusals = {};
    this.notRecovered = 0;
    /** @type {Record<string, number>} */
    this.closes = {};
    this.next = 0;
    /** @type {Map<string, {frame: string, at: number}>} id → the frame and when it was last sent */
    this.unacked = new Map();
    /** @type {Set<string>} */
    this.acked = new Set();
    this.storeFailed = 0;
    this.token = "";
    /** The last close code, and the outcome of the last failed connect attempt (for a stuck run's report). */
    this.lastClose = 0;
    this.lastRefusal = "";
  }

  /** @param {number} seq */
  take(seq) {
    this.frames += 1;
    if (seq >= this.seen.length) {
      const grown = new Uint8Array(Math.max(seq + 1, this.seen.length * 2));
      grown.set(this.seen);
      this.seen = grown;
    }
    if (this.seen[seq] === 1) this.duplicates += 1;
    else {
      if (seq < this.max) this.outOfOrder += 1;
      this.seen[seq] = 1;
      this.distinct += 1;
    }
    if (seq > this.max) this.max = seq;
  }

  /** @param {any} f */
  onFrame(f) {
    switch (f.type) {
      case "message":
        if (typeof f.seq === "number") this.take(f.seq);
        return;
      case "ack":
        if (typeof f.id === "string" && this.unacked.delete(f.id)) this.acked.add(f.id);
        return;
      case "welcome":
        if (f.recovered === false) this.notRecovered += 1;
        this.isOpen = true;
        // A new socket: what was not acked on the last one is sent again, with the same ids.
        for (const entry of this.unacked.values()) this.resend(entry);
        return;
      case "error":
        if (f.code === "store_failed" || f.code === "rate_limited") {
          if (f.code === "store_failed") this.storeFailed += 1;
          const entry = typeof f.id === "string" ? this.unacked.get(f.id) : undefined;
          // Sent again at the next resend round, not at once (a rate limit wants a pause).
          if (entry) entry.at = 0;
        }
        return;
      default:
        return;
    }
  }

  /** @param {{frame: string, at: number}} entry */
  resend(entry) {
    if (!this.isOpen || this.ws === undefined) return;
    entry.at = Date.now();
    this.ws.send(entry.frame);
  }

  sendNext() {
    if (!this.isOpen || this.ws === undefined || this.next >= sendMax || this.unacked.size >= MAX_IN_FLIGHT) return;
    const id = `${this.sub}-${this.next++}`;
    const entry = { frame: JSON.stringify({ type: "message", text: `soak ${id}`, id }), at: Date.now() };
    this.unacked.set(id, entry);
    this.ws.send(entry.frame);
  }

  /** Opens a socket, resuming after the last seq seen; retries refusals and refused connections. */
  async connect() {
    const { baseUrl, room } = /** @type {NonNullable<typeof setup>} */ (setup);
    for (let attempt = 0; ; attempt++) {
      const url = `${baseUrl.replace(/^http/, "ws")}/ws/chat/${room}?batch=1&since=${this.max}`;
      const outcome = await new Promise((resolve) => {
        const ws = new WebSocket(url, {
          headers: { Authorization: `Bearer ${this.token}` },
          perMessageDeflate: false,
          closeTimeout: 1000,
        });
        ws.on("unexpected-response", (_req, res) => {
          res.resume();
          resolve(`refused ${res.statusCode}`);
          ws.terminate();
        });
        ws.on("error", (error) => resolve(`error ${/** @type {any} */ (error).code ?? error.message}`));
        ws.on("open", () => {
          this.ws = ws;
          ws.on("message", (data, isBinary) => {
            if (isBinary) return;
            const text = data.toString();
            const parsed = JSON.parse(text);
            if (Array.isArray(parsed)) for (const f of parsed) this.onFrame(f);
            // Every real client must echo heartbeats (README), byte for byte. Never in a batch frame.
            else if (parsed.type === "heartbeat" && ECHO_HEARTBEATS) ws.send(text);
            else this.onFrame(parsed);
          });
          ws.on("close", (code) => this.onClose(ws, code));
          resolve("open");
        });
      });
      if (outcome === "open") return;
      this.refusals[outcome] = (this.refusals[outcome] ?? 0) + 1;
      this.lastRefusal = String(outcome);
      // A restarting server, a room busy with redirects: back off a little, with jitter.
      await wait(Math.min(2000, 100 * 2 ** Math.min(attempt, 4)) * (0.5 + Math.random()));
    }
  }

  /** @param {WebSocket} ws @param {number} code */
  onClose(ws, code) {
    if (ws !== this.ws) return;
    this.isOpen = false;
    this.ws = undefined;
    this.closes[code] = (this.closes[code] ?? 0) + 1;
    this.lastClose = code;
    if (stopping) return;
    this.reconnects += 1;
    // Moved (4307): at once. Anything else (a reset, a restart): after a short random pause.
    const delay = code === 4307 ? 0 : 100 + Math.random() * 900;
    setTimeout(() => void this.connect(), delay);
  }
}

/** @param {Client[]} list */
async function connectAll(list) {
  let i = 0;
  let open = 0;
  const worker = async () => {
    while (i < list.length) {
      const c = /** @type {Client} */ (list[i++]);
      await c.connect();
      open += 1;
      if (open % 200 === 0) process.send?.({ type: "connected", open });
    }
  };
  await Promise.all(Array.from({ length: CONNECT_CONCURRENCY }, worker));
  process.send?.({ type: "connected", open, done: true });
}

/** @param {string} secret @param {string} sub */
function mint(secret, sub) {
  return new SignJWT({ role: "member", name: sub })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setExpirationTime(Math.floor(Date.now() / 1000) + 4 * 3600)
    .sign(new TextEncoder().encode(secret));
}

function resendRound() {
  const now = Date.now();
  for (const c of clients) {
    if (!c.isSender) continue;
    for (const entry of c.unacked.values()) if (now - entry.at > RESEND_AFTER_MS) c.resend(entry);
  }
}
setInterval(resendRound, 1000).unref();
// The parent went (finished, or killed at its hard timeout): so does this process, and its sockets.
process.on("disconnect", () => process.exit(0));

/** @param {number} seq */
function progress(seq) {
  let open = 0;
  let atLeast = 0;
  let sent = 0;
  let acked = 0;
  let unacked = 0;
  for (const c of clients) {
    if (c.isOpen) open += 1;
    if (c.isOpen && c.distinct >= seq && c.max >= seq) atLeast += 1;
    sent += c.next;
    acked += c.acked.size;
    unacked += c.unacked.size;
  }
  return { open, atLeast, sent, acked, unacked, clients: clients.length };
}

/** Why clients are not at `seq`: closes and failed connects so far, and a few of the clients behind. */
function lagging(seq) {
  /** @type {Record<string, number>} */
  const closes = {};
  /** @type {Record<string, number>} */
  const refusals = {};
  /** @type {string[]} */
  const behind = [];
  for (const c of clients) {
    for (const [code, n] of Object.entries(c.closes)) closes[code] = (closes[code] ?? 0) + n;
    for (const [why, n] of Object.entries(c.refusals)) refusals[why] = (refusals[why] ?? 0) + n;
    if (c.isOpen && c.distinct >= seq && c.max >= seq) continue;
    if (behind.length < 8) {
      behind.push(
        `${c.sub}: open ${c.isOpen}, max ${c.max}, distinct ${c.distinct}, last close ${c.lastClose}, last failed connect ${c.lastRefusal || "-"}, reconnects ${c.reconnects}`,
      );
    }
  }
  return { closes, refusals, behind };
}

/** @param {number} seq */
function result(seq) {
  const totals = {
    clients: clients.length,
    frames: 0,
    missing: 0,
    duplicates: 0,
    outOfOrder: 0,
    beyond: 0,
    reconnects: 0,
    /** @type {Record<string, number>} */
    refusals: {},
    notRecovered: 0,
    storeFailed: 0,
    sent: 0,
    unacked: 0,
    /** @type {Record<string, number>} */
    closes: {},
    /** @type {string[]} */
    bad: [],
    /** @type {string[]} */
    ids: [],
  };
  for (const c of clients) {
    let held = 0;
    for (let s = 1; s <= seq && s < c.seen.length; s++) held += c.seen[s] ?? 0;
    const missing = seq - held;
    const beyond = c.distinct - held;
    totals.frames += c.frames;
    totals.missing += missing;
    totals.duplicates += c.duplicates;
    totals.outOfOrder += c.outOfOrder;
    totals.beyond += beyond;
    totals.reconnects += c.reconnects;
    for (const [why, n] of Object.entries(c.refusals)) totals.refusals[why] = (totals.refusals[why] ?? 0) + n;
    totals.notRecovered += c.notRecovered;
    totals.storeFailed += c.storeFailed;
    totals.sent += c.next;
    totals.unacked += c.unacked.size;
    for (const [code, n] of Object.entries(c.closes)) totals.closes[code] = (totals.closes[code] ?? 0) + n;
    if ((missing > 0 || c.duplicates > 0 || c.outOfOrder > 0 || beyond > 0) && totals.bad.length < 20) {
      totals.bad.push(
        `${c.sub}: ${held}/${seq} held, max ${c.max}, ${c.duplicates} dup, ${c.outOfOrder} out of order, open ${c.isOpen}, reconnects ${c.reconnects}`,
      );
    }
    totals.ids.push(...c.acked);
  }
  return totals;
}

process.on("message", async (/** @type {any} */ msg) => {
  switch (msg.type) {
    case "start": {
      setup = { baseUrl: msg.baseUrl, secret: msg.secret, room: msg.room };
      const senders = new Set(msg.senders);
      for (const sub of msg.users) {
        const c = new Client(sub, senders.has(sub));
        c.token = await mint(msg.secret, sub);
        clients.push(c);
      }
      // Senders first: traffic flows while the rest connect and the room grows.
      const list = [...clients.filter((c) => c.isSender), ...clients.filter((c) => !c.isSender)];
      void connectAll(list);
      return;
    }
    case "send":
      sendMax = msg.max;
      if (!sending) {
        sending = true;
        sendTimer = setInterval(() => {
          for (const c of clients) if (c.isSender) c.sendNext();
        }, msg.intervalMs);
      }
      return;
    case "stopSending":
      if (sendTimer !== undefined) clearInterval(sendTimer);
      sending = false;
      process.send?.({ type: "stopped", ...progress(0) });
      return;
    case "progress":
      process.send?.({ type: "progress", ...progress(msg.seq), ...(msg.detail ? lagging(msg.seq) : {}) });
      return;
    case "finish": {
      const deadline = Date.now() + msg.timeoutMs;
      while (Date.now() < deadline) {
        const p = progress(msg.seq);
        if (p.atLeast === p.clients) break;
        await wait(200);
      }
      // Nothing more is coming: whatever arrives late would not change the verdict of this run.
      stopping = true;
      process.send?.({ type: "result", ...result(msg.seq) });
      for (const c of clients) c.ws?.terminate();
      return;
    }
    default:
      return;
  }
});
