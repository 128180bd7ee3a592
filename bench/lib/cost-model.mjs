/**
 * The sweep's cost model (bench/README.md, "Cost model"): what one message costs at Cloudflare's
 * published prices, from the counts the server measured (`USAGE_STATS`, src/worker/usage.ts) over a
 * step. Marginal prices: the plan's monthly allowances and the $5 minimum are left out.
 *
 * Prices as read on 2026-12-01:
 * - Durable Objects, https://developers.cloudflare.com/durable-objects/platform/pricing/ : requests
 *   $0.15 per million (HTTP requests, each RPC method call on a stub, alarms, and incoming WebSocket
 *   messages billed 20:1; outgoing WebSocket messages are not billed); duration $12.50 per million
 *   GB-s, wall clock while an object is active and not hibernatable, at 128 MB per object; SQLite
 *   storage rows read $0.001 per million and rows written $1.00 per million.
 * - Workers Standard (the same page family; https://developers.cloudflare.com/workflows/reference/pricing/
 *   quotes it): requests $0.30 per million, CPU $0.02 per million CPU ms (a WebSocket upgrade is one
 *   request; its later frames go to the object, not the Worker).
 */

export const PRICES = {
  doRequest: 0.15e-6,
  doGbSecond: 12.5e-6,
  rowRead: 0.001e-6,
  rowWritten: 1.0e-6,
  workerRequest: 0.3e-6,
  /** Incoming WebSocket messages per billed request. */
  wsPerRequest: 20,
  /** GB per object, as billed. */
  objectGb: 0.128,
};

/**
 * Counts per message and dollars per million messages.
 * @param {Record<string, number> | undefined} usage The server's counters over the step.
 * @param {object} o
 * @param {number} o.messages Messages sent in the step.
 * @param {number} o.heartbeatEchoes Heartbeat echoes the clients sent in the step: incoming messages, billed
 *   like the rest (heartbeats go out every HEARTBEAT_INTERVAL_MS and every quarter of MAX_UNREAD_BYTES sent).
 * @param {number} o.framesOut Frames the clients received in the step.
 * @param {number} o.objects Objects the room is spread over (each awake while messages flow).
 * @param {number} o.roomRate Messages per second in the room.
 */
export function costOf(usage, o) {
  if (usage === undefined || o.messages === 0) return undefined;
  const get = (/** @type {string} */ k) => usage[k] ?? 0;
  let rpc = 0;
  /** @type {Record<string, number>} */
  const rpcByMethod = {};
  for (const [k, v] of Object.entries(usage)) {
    if (!k.startsWith("rpc.")) continue;
    rpc += v;
    rpcByMethod[k.slice(4)] = round3(v / o.messages);
  }
  const per = (/** @type {number} */ x) => x / o.messages;
  const wsIn = get("do.webSocketMessage");
  const counts = {
    workerRequests: per(get("worker.requests")),
    doFetches: per(get("do.fetch")),
    rpcCalls: per(rpc),
    rpcByMethod,
    alarms: per(get("do.alarm")),
    wsIn: per(wsIn),
    /** Of `wsIn`: heartbeat echoes. */
    heartbeatEchoes: per(o.heartbeatEchoes),
    wsOut: per(o.framesOut),
    sqlStatements: per(get("sql.statements")),
    rowsRead: per(get("sql.rowsRead")),
    rowsWritten: per(get("sql.rowsWritten")),
    /** Every object awake for the whole time the messages take, at the step's rate. */
    gbSeconds: (o.objects * PRICES.objectGb) / o.roomRate,
  };
  const doRequests = counts.doFetches + counts.rpcCalls + counts.alarms + counts.wsIn / PRICES.wsPerRequest;
  const dollars = {
    requests: doRequests * PRICES.doRequest + counts.workerRequests * PRICES.workerRequest,
    rowsWritten: counts.rowsWritten * PRICES.rowWritten,
    rowsRead: counts.rowsRead * PRICES.rowRead,
    duration: counts.gbSeconds * PRICES.doGbSecond,
  };
  const perMillion = (/** @type {number} */ x) => round3(x * 1e6);
  return {
    perMessage: Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, typeof v === "number" ? round3(v) : v])),
    billedDoRequestsPerMessage: round3(doRequests),
    dollarsPerMillion: {
      requests: perMillion(dollars.requests),
      rowsWritten: perMillion(dollars.rowsWritten),
      rowsRead: perMillion(dollars.rowsRead),
      duration: perMillion(dollars.duration),
      total: perMillion(dollars.requests + dollars.rowsWritten + dollars.rowsRead + dollars.duration),
    },
  };
}

/** @param {number} x */
function round3(x) {
  return Math.round(x * 1000) / 1000;
}
