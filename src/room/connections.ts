/**
 * A room's connections: the cache of its sockets' state (rebuilt from their attachments on the first
 * event after a wake), counting them in and out, who a frame goes to, and closing. Each write is
 * counted against what its client has read by the meter (src/room/meter.ts). The room decides what to
 * send and whom to close; this module does the sending and the closing.
 */

import { log } from "../common/log";
import { CLOSE_CODES, type ErrorFrame, type FrameErrorCode } from "../protocol";
import { batchFrames } from "./batch-frames";
import { type BroadcastLists, broadcastListsOf } from "./broadcast-lists";
import { byteLength } from "./bytes";
import { type Connection, logFieldsOf, restoreConnection } from "./connection";
import { Meter } from "./meter";
import { markClosing, safeClose } from "./socket-chores";
import type { Users } from "./users";

export interface ConnectionHooks {
  /** A connection found open at a wake was counted in again (its user is online). */
  restored(conn: Connection): void;
  /** A connection was counted out, whoever closed it (its user may have left). */
  countedOut(conn: Connection, code: number): void;
  /** The room is about to close a connection: what it queued for it goes out first. */
  closing?(conn: Connection): void;
}

export interface ConnectionSettings {
  rateLimitBurst: number;
  /** One connection's unread budget, and one user's over all its sockets. */
  maxUnreadBytes: number;
  /** The room's, over all its sockets, closing ones included. */
  roomMaxQueuedBytes: number;
}

export class Connections {
  readonly #ctx: DurableObjectState;
  readonly #settings: ConnectionSettings;
  readonly #hooks: ConnectionHooks;
  readonly #users: Users;
  readonly #meter: Meter;
  #byWs: Map<WebSocket, Connection> | undefined;
  /**
   * Runs before anything a member said goes to others (a broadcast, a direct message): the presence
   * announcements still queued go first, so nobody hears from a user before its `join`.
   */
  beforeOthers: (() => void) | undefined;
  /** Connections accepted by this instance so far: the `order` of the latest. */
  #accepted = 0;
  /** Who a broadcast goes to; `undefined` when a connection came or went since it was built. */
  #lists: BroadcastLists | undefined;

  constructor(ctx: DurableObjectState, settings: ConnectionSettings, hooks: ConnectionHooks, users: Users) {
    this.#ctx = ctx;
    this.#settings = settings;
    this.#hooks = hooks;
    this.#users = users;
    this.#meter = new Meter(settings, users);
  }

  /** Every known connection, counted out ones included until their socket closes. */
  all(): Map<WebSocket, Connection> {
    if (this.#byWs) return this.#byWs;
    const byWs = new Map<WebSocket, Connection>();
    this.#byWs = byWs;
    const now = Date.now();
    for (const ws of this.#ctx.getWebSockets()) {
      const conn = restoreConnection(ws, this.#settings.rateLimitBurst, now, (id) => this.#users.get(id, now));
      if (!conn) {
        log("error", "attachment_invalid", { attachment: "unreadable" });
        safeClose(ws, CLOSE_CODES.internalError, "internal error");
        continue;
      }
      byWs.set(ws, conn);
      this.#meter.restored(conn);
      if (!conn.isGone) this.#hooks.restored(conn);
    }
    return byWs;
  }

  /** Known without waking anything up: for logs. */
  peek(ws: WebSocket): Connection | undefined {
    return this.#byWs?.get(ws);
  }

  add(conn: Connection): void {
    conn.order = ++this.#accepted;
    this.all().set(conn.ws, conn);
    this.#lists = undefined;
  }

  /** The `order` of the latest connection accepted: the ones accepted later have a higher one. */
  get accepted(): number {
    return this.#accepted;
  }

  /**
   * Sends several frames to each open connection, each only what `pick` chooses for it (in order).
   * One socket write per connection where the client takes frames in one (batch frames, within
   * their bounds), else one each.
   */
  broadcastEach(pick: (conn: Connection) => string[]): void {
    // Connections given the very same list (most of them) share its frames and sizes: one entry
    // for those that take batch frames, one for the others.
    type Out = { frames: string[]; sizes: number[] };
    const shared = { batch: new Map<string[], Out>(), plain: new Map<string[], Out>() };
    let behind: Connection[] | undefined;
    for (const conn of this.#broadcastLists()?.all ?? []) {
      const picked = pick(conn);
      if (picked.length === 0 || conn.ws.readyState !== WebSocket.OPEN) continue;
      const isBatch = conn.attachment.batch === true;
      const memo = isBatch ? shared.batch : shared.plain;
      let out = memo.get(picked);
      if (out === undefined) {
        const frames = isBatch ? batchFrames(picked) : picked;
        out = { frames, sizes: frames.map(byteLength) };
        memo.set(picked, out);
      }
      if (this.#meter.write(conn, out.frames, out.sizes)) {
        behind ??= [];
        behind.push(conn);
      }
    }
    for (const conn of behind ?? []) this.closeBehind(conn);
    this.enforceBudgets();
  }

  liveCount(): number {
    let n = 0;
    for (const conn of this.all().values()) if (!conn.isGone) n++;
    return n;
  }

  /**
   * Sockets the room still holds, optionally of one tag: open ones, and the ones it closed whose
   * client has not answered (the runtime keeps what was queued for them until it lets go). A
   * socket whose close the peer answered is done with, even while the runtime still lists it.
   */
  heldCount(tag?: string): number {
    const byWs = this.all();
    let n = 0;
    for (const ws of this.#ctx.getWebSockets(tag)) if (byWs.has(ws)) n++;
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

  /**
   * Forgets connections whose socket the runtime no longer lists (let go of without an event we
   * saw), so their bytes stop counting against the budgets.
   */
  reconcile(): void {
    const held = new Set(this.#ctx.getWebSockets());
    for (const ws of [...this.all().keys()]) if (!held.has(ws)) this.forget(ws, 1006, "gone");
  }

  /** Closes a connection from our side and counts it out. */
  close(conn: Connection, code: number, reason: string): void {
    if (conn.isGone) return;
    this.#hooks.closing?.(conn);
    if (conn.isGone) return; // closed while what was queued went out (behind, say)
    markClosing(conn); // before close(): a closed socket may refuse a new attachment
    safeClose(conn.ws, code, reason);
    this.#countOut(conn, code, reason, "server");
  }

  /** The peer closed, or the socket failed: counts it out (if still in) and forgets it. */
  forget(ws: WebSocket, code: number, reason: string): Connection | undefined {
    const byWs = this.all();
    const conn = byWs.get(ws);
    if (conn && !conn.isGone) this.#countOut(conn, code, reason, "client");
    if (conn && byWs.delete(ws)) this.#meter.letGo(conn);
    return conn;
  }

  #countOut(conn: Connection, code: number, reason: string, by: "server" | "client"): void {
    conn.isGone = true;
    this.#lists = undefined;
    markClosing(conn);
    log("debug", "connection_close", {
      ...logFieldsOf(conn),
      code,
      reason,
      by,
      durationMs: Date.now() - conn.attachment.connectedAt,
    });
    this.#hooks.countedOut(conn, code);
  }

  // -- sending -------------------------------------------------------------------------------

  /**
   * Sends to every counted-in connection (with `isPlainOnly`, only to those that take no batch
   * frames). The lists are kept between messages and rebuilt only when a connection comes or goes:
   * asking the runtime for every socket on every message is the costliest part of a broadcast in a
   * large room. `before`, when given, is a text frame sent right before `frame` to each recipient,
   * and counted with it.
   */
  broadcast(frame: string | ArrayBuffer, except?: WebSocket, before?: string, isPlainOnly = false): void {
    this.beforeOthers?.();
    const lists = this.#broadcastLists();
    if (lists === undefined) return;
    this.#sendEach(isPlainOnly ? lists.plain : lists.all, [frame], except, before);
  }

  /**
   * Sends a run of frames to the connections that take batch frames, as batch frames
   * (src/room/batch-frames.ts); whether there was any such connection.
   */
  broadcastRun(frames: string[]): boolean {
    this.beforeOthers?.();
    const lists = this.#broadcastLists();
    if (lists === undefined || lists.batch.length === 0) return false;
    this.#sendEach(lists.batch, batchFrames(frames));
    return true;
  }

  /** Sends `frames` to each of `conns` (each counted once sent), then closes the ones behind. */
  #sendEach(conns: Connection[], frames: Array<string | ArrayBuffer>, except?: WebSocket, before?: string): void {
    const sizes = frames.map(byteLength);
    const beforeBytes = before === undefined ? 0 : byteLength(before);
    let behind: Connection[] | undefined;
    for (const conn of conns) {
      if (conn.ws === except || conn.ws.readyState !== WebSocket.OPEN) continue;
      if (this.#meter.write(conn, frames, sizes, before, beforeBytes)) {
        behind ??= [];
        behind.push(conn);
      }
    }
    // Closed after the loop: a close announces a leave, which is a broadcast of its own.
    for (const conn of behind ?? []) this.closeBehind(conn);
    this.enforceBudgets();
  }

  /** Who broadcasts go to, built again after a connection came or went; none before any restore. */
  #broadcastLists(): BroadcastLists | undefined {
    if (this.#lists !== undefined) return this.#lists;
    if (this.#byWs === undefined) return undefined; // nothing restored yet: nobody to send to
    const lists = broadcastListsOf(this.#byWs.values());
    this.#lists = lists;
    this.#meter.spreadOver(lists.all.length);
    return lists;
  }

  /** Sends to one connection; `judge: false` counts the bytes without closing a client behind. */
  send(conn: Connection, frame: string, judge = true): void {
    const isBehind = this.#meter.write(conn, [frame], [byteLength(frame)]);
    if (isBehind && judge) this.closeBehind(conn);
    if (judge) this.enforceBudgets();
  }

  /** Sends an `error` frame (carrying the refused frame's `id`, when it had one). */
  sendError(conn: Connection, code: FrameErrorCode, message: string, id?: string): void {
    const frame: ErrorFrame = { type: "error", code, message, ...(id === undefined ? {} : { id }) };
    this.send(conn, JSON.stringify(frame));
  }

  // -- what a client has read (src/room/meter.ts) ---------------------------------------------------

  /** Sends a heartbeat whose exact echo proves the client read everything sent before it. */
  sendHeartbeat(conn: Connection, now: number): void {
    this.#meter.sendHeartbeat(conn, now);
  }

  /** Whether `message` is the echo of a heartbeat `conn` owes, and if so takes it (the caller saves). */
  takeEcho(conn: Connection, message: string | ArrayBuffer): boolean {
    return this.#meter.takeEcho(conn, message);
  }

  /** Whether `conn` is behind for good (for the alarm, which sends nothing to a quiet room). */
  isBehind(conn: Connection, now: number): boolean {
    return this.#meter.isBehind(conn, now);
  }

  /** Closes a client that does not read fast enough with 4408 `not reading`, and logs how far behind. */
  closeBehind(conn: Connection, budget?: "room" | "user"): void {
    if (conn.isGone) return;
    const unreadBytes = conn.window.sent - conn.window.read;
    const over = budget === undefined ? {} : { over: budget, queuedBytes: this.#meter.queuedBytes };
    log("warn", "slow_consumer", { ...logFieldsOf(conn), unreadBytes, ...over });
    this.close(conn, CLOSE_CODES.heartbeatTimeout, "not reading");
  }

  /** Keeps the bytes queued to slow readers within the room's budget and each user's. */
  enforceBudgets(now = Date.now()): void {
    const counted = () => [...this.all().values()].filter((c) => !c.isGone);
    for (const [conn, budget] of this.#meter.due(now, (tag) => (tag === undefined ? counted() : this.live(tag)))) {
      this.closeBehind(conn, budget);
    }
  }
}
