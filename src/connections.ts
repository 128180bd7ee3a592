/**
 * A room's connections: the cache of its sockets' state (rebuilt from their attachments on the first
 * event after a wake), counting them in and out, and every frame sent to them, metered against how
 * much each client has shown it read (src/reading.ts). The room decides what to send and whom to
 * close; this module does the sending and the closing.
 */
import { byteLength } from "./bytes";
import { type Connection, logFieldsOf, restoreConnection } from "./connection";
import { log } from "./log";
import { CLOSE_CODES } from "./protocol";
import { acknowledge, judgeUnread, nextHeartbeat, recordHeartbeat } from "./reading";
import { markClosing, safeClose, saveAttachment, trySend } from "./socket-chores";

export interface ConnectionHooks {
  /** A connection found open at a wake was counted in again (its user is online). */
  restored(conn: Connection): void;
  /** A connection was counted out, whoever closed it (its user may have left). */
  countedOut(conn: Connection): void;
}

export interface ConnectionSettings {
  rateLimitBurst: number;
  maxUnreadBytes: number;
}

export class Connections {
  readonly #ctx: DurableObjectState;
  readonly #settings: ConnectionSettings;
  readonly #hooks: ConnectionHooks;
  #byWs: Map<WebSocket, Connection> | undefined;
  /** Who a broadcast goes to; `undefined` when a connection came or went since it was built. */
  #broadcastList: Connection[] | undefined;

  constructor(ctx: DurableObjectState, settings: ConnectionSettings, hooks: ConnectionHooks) {
    this.#ctx = ctx;
    this.#settings = settings;
    this.#hooks = hooks;
  }

  /** Every known connection, counted out ones included until their socket closes. */
  all(): Map<WebSocket, Connection> {
    if (this.#byWs) return this.#byWs;
    const byWs = new Map<WebSocket, Connection>();
    this.#byWs = byWs;
    const now = Date.now();
    for (const ws of this.#ctx.getWebSockets()) {
      const conn = restoreConnection(ws, this.#settings.rateLimitBurst, now);
      if (!conn) {
        log("error", "attachment_invalid", { attachment: "unreadable" });
        safeClose(ws, CLOSE_CODES.internalError, "internal error");
        continue;
      }
      byWs.set(ws, conn);
      if (!conn.isGone) this.#hooks.restored(conn);
    }
    return byWs;
  }

  /** Known without waking anything up: for logs. */
  peek(ws: WebSocket): Connection | undefined {
    return this.#byWs?.get(ws);
  }

  add(conn: Connection): void {
    this.all().set(conn.ws, conn);
    this.#broadcastList = undefined;
  }

  liveCount(): number {
    let n = 0;
    for (const conn of this.all().values()) if (!conn.isGone) n++;
    return n;
  }

  /** Open, counted-in connections, optionally those of one socket tag. */
  live(tag?: string): Connection[] {
    const byWs = this.all();
    const out: Connection[] = [];
    for (const ws of this.#ctx.getWebSockets(tag)) {
      const conn = byWs.get(ws);
      if (conn !== undefined && !conn.isGone && ws.readyState === WebSocket.OPEN) out.push(conn);
    }
    return out;
  }

  /** Closes a connection from our side and counts it out. */
  close(conn: Connection, code: number, reason: string): void {
    if (conn.isGone) return;
    markClosing(conn); // before close(): a closed socket may refuse a new attachment
    safeClose(conn.ws, code, reason);
    this.#countOut(conn, code, reason, "server");
  }

  /** The peer closed, or the socket failed: counts it out (if still in) and forgets it. */
  forget(ws: WebSocket, code: number, reason: string): Connection | undefined {
    const byWs = this.all();
    const conn = byWs.get(ws);
    if (conn && !conn.isGone) this.#countOut(conn, code, reason, "client");
    byWs.delete(ws);
    return conn;
  }

  #countOut(conn: Connection, code: number, reason: string, by: "server" | "client"): void {
    conn.isGone = true;
    this.#broadcastList = undefined;
    markClosing(conn);
    log("info", "connection_close", {
      ...logFieldsOf(conn),
      code,
      reason,
      by,
      durationMs: Date.now() - conn.attachment.connectedAt,
    });
    this.#hooks.countedOut(conn);
  }

  // -- sending -------------------------------------------------------------------------------

  /**
   * Sends to every counted-in connection. The list is kept between messages and rebuilt only when a
   * connection comes or goes: asking the runtime for every socket on every message is the costliest
   * part of a broadcast in a large room. `before`, when given, is a text frame sent right before
   * `frame` to each recipient, and counted with it.
   */
  broadcast(frame: string | ArrayBuffer, except?: WebSocket, before?: string): void {
    if (this.#broadcastList === undefined) {
      if (this.#byWs === undefined) return; // nothing restored yet: nobody to send to
      this.#broadcastList = [];
      for (const conn of this.#byWs.values()) if (!conn.isGone) this.#broadcastList.push(conn);
    }
    const bytes = byteLength(frame) + (before === undefined ? 0 : byteLength(before));
    let behind: Connection[] | undefined;
    for (const conn of this.#broadcastList) {
      if (conn.ws === except || conn.ws.readyState !== WebSocket.OPEN) continue;
      // Both sent before they are counted: nothing (an early heartbeat) comes between them.
      if (before !== undefined) trySend(conn.ws, before);
      trySend(conn.ws, frame);
      if (this.#countSent(conn, bytes)) {
        behind ??= [];
        behind.push(conn);
      }
    }
    // Closed after the loop: a close announces a leave, which is a broadcast of its own.
    for (const conn of behind ?? []) this.closeBehind(conn);
  }

  /** Sends to one connection; `judge: false` counts the bytes without closing a client behind. */
  send(conn: Connection, frame: string, judge = true): void {
    trySend(conn.ws, frame);
    const isBehind = this.#countSent(conn, byteLength(frame));
    if (isBehind && judge) this.closeBehind(conn);
  }

  /**
   * Sends a heartbeat with a fresh nonce and records it in the attachment: its exact echo is what
   * proves the client read everything sent before it.
   */
  sendHeartbeat(conn: Connection, now: number): void {
    const next = nextHeartbeat(conn.attachment.awaiting, now);
    conn.attachment.awaiting = next.awaiting;
    recordHeartbeat(conn.window, next.text, now);
    saveAttachment(conn);
    trySend(conn.ws, next.text);
  }

  /**
   * Whether `message` is the exact echo of a heartbeat `conn` owes, and if so takes it. The caller
   * saves the attachment.
   */
  takeEcho(conn: Connection, message: string | ArrayBuffer): boolean {
    const taken = acknowledge(conn.window, conn.attachment.awaiting, message);
    if (taken === undefined) return false;
    conn.attachment.awaiting = taken.awaiting;
    return true;
  }

  /** Whether `conn` is behind for good (for the alarm, which sends nothing to a quiet room). */
  isBehind(conn: Connection, now: number): boolean {
    return judgeUnread(conn.window, conn.attachment.awaiting, this.#settings.maxUnreadBytes, () => now) === "over";
  }

  /**
   * Counts `bytes` sent to `conn`: sends an early heartbeat every quarter of the budget, and says
   * whether the client is behind for good.
   */
  #countSent(conn: Connection, bytes: number): boolean {
    conn.window.sent += bytes;
    const verdict = judgeUnread(conn.window, conn.attachment.awaiting, this.#settings.maxUnreadBytes, Date.now);
    if (verdict === "probe") this.sendHeartbeat(conn, Date.now());
    return verdict === "over";
  }

  /** Closes a client that does not read fast enough with 4408 `not reading`, and logs how far behind. */
  closeBehind(conn: Connection): void {
    if (conn.isGone) return;
    log("warn", "slow_consumer", { ...logFieldsOf(conn), unreadBytes: conn.window.sent - conn.window.read });
    this.close(conn, CLOSE_CODES.heartbeatTimeout, "not reading");
  }
}
