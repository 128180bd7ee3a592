/**
 * The client side of the bench: real `ws` sockets, kept cheap because they share the machine with
 * the server (no compression, no UTF-8 check, no schema validation). A socket counts as open once its
 * first frame, the welcome, came; it echoes every heartbeat, as the edge-rooms protocol asks (the
 * other servers send none). What it receives is counted by deliveries.mjs.
 *
 * Every loop is bounded in count and in time, and every wait has a deadline.
 */
import WebSocket from "ws";
import { sleep } from "../../scripts/lib/processes.mjs";

const WS_OPTIONS = { perMessageDeflate: false, skipUTF8Validation: true };
const WELCOME_MARKER = Buffer.from('"type":"welcome"');
const HEARTBEAT_MARKER = Buffer.from('{"type":"heartbeat"');
/** edge-rooms' heartbeats are ~70 bytes; nothing else starts with the marker. */
const HEARTBEAT_MAX_BYTES = 128;

/**
 * A server under test, as the client sees it.
 * @typedef {object} Target
 * @property {string} name
 * @property {(room: string) => string} url WebSocket URL of a room.
 * @property {(client: number) => Record<string, string> | undefined} headers Upgrade headers of client number `client`.
 */

/**
 * What happens to a socket once it is open.
 * @typedef {object} SocketHooks
 * @property {(data: Buffer, isHeartbeat: boolean) => void} [onFrame] Each frame after the welcome
 *   (a heartbeat after its echo went out).
 * @property {(code: number) => void} [onClose] The socket closed after its welcome.
 */

/**
 * Opens a socket and waits for its first frame, which must be a welcome: resolves with `undefined`
 * then, or with why not (the socket is terminated).
 * @param {object} o
 * @param {string} o.url
 * @param {Record<string, string> | undefined} o.headers
 * @param {number} o.handshakeTimeoutMs
 * @param {number} o.timeoutMs Until the welcome.
 * @param {SocketHooks} [o.hooks]
 * @returns {{ ws: WebSocket, welcomed: Promise<string | undefined> }}
 */
export function dial({ url, headers, handshakeTimeoutMs, timeoutMs, hooks = {} }) {
  const ws = new WebSocket(url, { ...WS_OPTIONS, handshakeTimeout: handshakeTimeoutMs, headers });
  /** @type {boolean | undefined} Whether the welcome came; undefined until the first frame or a failure. */
  let isOpen;
  const welcomed = new Promise((resolve) => {
    const finish = (/** @type {string | undefined} */ error) => {
      if (isOpen !== undefined) return;
      isOpen = error === undefined;
      clearTimeout(timer);
      if (error !== undefined) ws.terminate();
      resolve(error);
    };
    const timer = setTimeout(() => finish("timeout"), timeoutMs);
    ws.on("message", (/** @type {Buffer} */ data) => {
      const isHeartbeat = data.length <= HEARTBEAT_MAX_BYTES && data.indexOf(HEARTBEAT_MARKER) === 0;
      if (isHeartbeat) ws.send(data, { binary: false });
      if (isOpen === undefined) finish(data.indexOf(WELCOME_MARKER) >= 0 ? undefined : "first frame is not a welcome");
      else if (isOpen) hooks.onFrame?.(data, isHeartbeat);
    });
    ws.once("error", (error) => finish(error.message.slice(0, 80)));
    ws.on("close", (code) => {
      if (isOpen) hooks.onClose?.(code);
      else finish(`closed ${code}`);
    });
  });
  return { ws, welcomed };
}

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
 * @param {(data: Buffer, i: number) => void} [o.onFrame] Each frame socket `i` receives after its welcome.
 * @param {(i: number) => void} [o.onClose] Socket `i` closed after its welcome.
 */
export async function openMany({ target, count, concurrency, roomOf, firstClient = 0, timeoutMs, onFrame, onClose }) {
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
        const { ws, welcomed } = dial({
          url: target.url(roomOf(i)),
          headers: target.headers(firstClient + i),
          handshakeTimeoutMs: 10_000,
          timeoutMs,
          hooks: {
            onFrame: onFrame && ((data, isHeartbeat) => isHeartbeat || onFrame(data, i)),
            onClose: onClose && (() => onClose(i)),
          },
        });
        welcomed.then((error) => {
          inFlight--;
          if (error === undefined) {
            const now = performance.now();
            latencies[ok++] = now - start;
            lastWelcome = now;
            sockets[i] = ws;
          } else {
            failed++;
            failures.set(error, (failures.get(error) ?? 0) + 1);
          }
          if (ok + failed === count) resolve(undefined);
          else launch();
        });
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

/** Closes a socket with 1000 "bench done" (terminates it when it cannot). @param {WebSocket} ws */
export function closeDone(ws) {
  try {
    ws.close(1000, "bench done");
  } catch {
    ws.terminate();
  }
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
        closeDone(ws);
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
