/**
 * The room: one Durable Object per room id. It accepts connections with the WebSocket Hibernation
 * API, relays and stores messages, tracks presence, and runs the heartbeat alarm. Decisions that can
 * be pure live elsewhere (rate-limit, heartbeat, history, presence); this class orchestrates.
 */
import { DurableObject } from "cloudflare:workers";
import * as v from "valibot";
import { canAccessRoom, type Identity, verifyToken } from "./auth";
import { byteLength, utf8Length } from "./bytes";
import type { Config } from "./config";
import { loadConfig } from "./config";
import { type Attachment, type Connection, restoreConnection, tagForUser } from "./connection";
import { HttpError } from "./errors";
import { HANDOFF_HEADER, type Handoff, HandoffSchema } from "./handoff";
import { judgeConnection } from "./heartbeat";
import { framesToJsonArray, History, PAGE_MAX_BYTES, type Page, type PageQuery, REPLAY_MAX_BYTES } from "./history";
import { describeError, log } from "./log";
import { Presence } from "./presence";
import {
  type AckFrame,
  type AuthFrame,
  CLOSE_CODES,
  type ClientFrame,
  type ClientMessageFrame,
  clientFrameSchema,
  type ErrorFrame,
  type FrameErrorCode,
  type MessageFrame,
  PING_FRAME,
  PONG_FRAME,
  type PresenceEntry,
  type PresenceFrame,
  quickMessageFrame,
  SUBPROTOCOL,
  type User,
  type WelcomeFrame,
} from "./protocol";
import { type RateLimits, take } from "./rate-limit";
import { judgeUnread, newReadWindow, nextHeartbeat, PROBE_FRACTION } from "./reading";
import {
  clientIdOf,
  idOfRefused,
  isReservedCloseCode,
  markClosing,
  safeClose,
  saveAttachment,
  trySend,
} from "./socket-chores";

/** The content of a room message, from a socket frame or an HTTP body. */
export interface MessageBody {
  text?: string;
  data?: unknown;
  id?: string;
}

export interface Published {
  seq: number;
  ts: number;
  /** True when the sender's id matched a stored message, which was not sent again. */
  isDuplicate: boolean;
}

export interface RoomInfo {
  seq: number;
  connections: number;
  users: PresenceEntry[];
}

export class Room extends DurableObject<Env> {
  readonly #config: Config | undefined;
  readonly #history: History;
  readonly #frameSchema: ReturnType<typeof clientFrameSchema>;
  /** The rate limit, built once rather than per frame. */
  readonly #limits: RateLimits;
  /** Cache of the sockets' state, rebuilt from their attachments on the first event after a wake. */
  #connections: Map<WebSocket, Connection> | undefined;
  #presence = new Presence();
  /** Who a broadcast goes to; `undefined` when a connection came or went since it was built. */
  #broadcastList: Connection[] | undefined;
  /** Whether this object knows an alarm is set (read from storage once per wake), and for when. */
  #hasAlarm = false;
  #alarmDueAt = 0;

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const result = loadConfig(env);
    this.#config = result.ok ? result.config : undefined;
    this.#frameSchema = clientFrameSchema(this.#config?.maxTextLength ?? 0);
    this.#limits = {
      perSecond: this.#config?.rateLimitPerSecond ?? 1,
      burst: this.#config?.rateLimitBurst ?? 1,
      maxStrikes: this.#config?.rateLimitStrikes ?? 1,
    };
    this.#history = new History(ctx.storage, this.#config?.historyLimit ?? 0);
    // Answered by the runtime without waking the object.
    ctx.setWebSocketAutoResponse(new WebSocketRequestResponsePair(PING_FRAME, PONG_FRAME));
  }

  // -- runtime entry points ------------------------------------------------------------------

  override async fetch(request: Request): Promise<Response> {
    try {
      const config = this.#config;
      if (!config) return new HttpError("server_misconfigured", "the server is misconfigured").toResponse();
      const handoff = v.safeParse(HandoffSchema, JSON.parse(request.headers.get(HANDOFF_HEADER) ?? "null"));
      if (!handoff.success || request.headers.get("Upgrade")?.toLowerCase() !== "websocket") {
        return new HttpError("invalid_request", "not a room connect request").toResponse();
      }
      const connections = this.#restore(config);
      if (this.#liveCount(connections) >= config.maxConnectionsPerRoom) {
        const { room, user, ip } = handoff.output;
        log("info", "gate_refused", { room, user: user.id, ip, status: 503, code: "room_full" });
        return new HttpError("room_full", "the room is full; retry later", {
          headers: { "Retry-After": "10" },
        }).toResponse();
      }
      // Read once per wake, not per connect: after that this object keeps track itself, and looks
      // again only if the alarm is overdue (its retries ran out, say).
      if (!this.#hasAlarm || Date.now() > this.#alarmDueAt + config.heartbeatIntervalMs) {
        const due = (await this.ctx.storage.getAlarm()) ?? Date.now() + config.heartbeatIntervalMs;
        if (due !== this.#alarmDueAt || !this.#hasAlarm) await this.ctx.storage.setAlarm(Math.max(due, Date.now()));
        this.#alarmDueAt = due;
        this.#hasAlarm = true;
      }
      return this.#accept(handoff.output, config, connections);
    } catch (error) {
      log("error", "connect_failed", describeError(error));
      return new HttpError("internal_error", "internal error").toResponse();
    }
  }

  override async webSocketMessage(ws: WebSocket, message: string | ArrayBuffer): Promise<void> {
    const config = this.#config;
    if (!config) {
      this.#closeMisconfigured(ws);
      return;
    }
    const conn = this.#restore(config).get(ws);
    if (!conn || conn.isGone) return;
    try {
      await this.#onFrame(conn, message, config);
    } catch (error) {
      log("error", "frame_failed", { ...this.#logFields(conn), ...describeError(error) });
      this.#close(conn, CLOSE_CODES.internalError, "internal error");
    }
  }

  override async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    // Answer the peer's close frame. Newer compatibility dates make the runtime do it (and ignore
    // this call), but wrangler 4.86's local runtime leaves hibernatable sockets half-closed without it.
    safeClose(ws, isReservedCloseCode(code) ? CLOSE_CODES.normal : code, reason);
    this.#onGone(ws, code, reason);
  }

  override async webSocketError(ws: WebSocket, error: unknown): Promise<void> {
    const conn = this.#connections?.get(ws);
    log("warn", "socket_error", { ...(conn ? this.#logFields(conn) : {}), ...describeError(error) });
    this.#onGone(ws, 1006, "socket error");
  }

  override async alarm(): Promise<void> {
    // At-least-once and retried: running twice only sends one more heartbeat.
    const config = this.#config;
    if (!config) return;
    const connections = this.#restore(config);
    const now = Date.now();
    try {
      for (const conn of connections.values()) {
        if (conn.isGone) continue;
        // One connection's failure must not stop the heartbeat for the others.
        try {
          this.#heartbeat(conn, now, config);
        } catch (error) {
          log("error", "heartbeat_failed", { ...this.#logFields(conn), ...describeError(error) });
          this.#close(conn, CLOSE_CODES.internalError, "internal error");
        }
      }
    } finally {
      // Rescheduled whatever happened above, or the room would keep live sockets with no alarm.
      this.#hasAlarm = this.#liveCount(connections) > 0;
      this.#alarmDueAt = now + config.heartbeatIntervalMs;
      if (this.#hasAlarm) await this.ctx.storage.setAlarm(this.#alarmDueAt);
    }
  }

  #heartbeat(conn: Connection, now: number, config: Config): void {
    const pinged = this.ctx.getWebSocketAutoResponseTimestamp(conn.ws)?.getTime() ?? 0;
    const verdict = judgeConnection({
      now,
      exp: conn.attachment.exp,
      lastActivity: Math.max(conn.lastFrameAt, conn.attachment.connectedAt, pinged),
      unechoedSince: conn.attachment.awaiting?.since,
      timeoutMs: config.heartbeatTimeoutMs,
    });
    if (verdict.action === "close") {
      this.#close(conn, verdict.code, verdict.reason);
      return;
    }
    conn.attachment.seenAt = Math.max(conn.attachment.seenAt, conn.lastFrameAt);
    this.#sendHeartbeat(conn, now);
  }

  /**
   * Sends a heartbeat with a fresh nonce and records it in the attachment: its exact echo is what
   * proves the client read everything sent before it (src/reading.ts).
   */
  #sendHeartbeat(conn: Connection, now: number): void {
    const next = nextHeartbeat(conn.attachment.awaiting, now);
    conn.attachment.awaiting = next.awaiting;
    conn.expectedEcho = next.text;
    conn.window.probed = conn.window.sent;
    saveAttachment(conn);
    trySend(conn.ws, next.text);
    conn.window.sent += next.text.length;
  }

  // -- RPC for the HTTP API (the Worker has already checked the token and the role) ------------

  /** Publishes a message as `from`, exactly like one sent over a socket. */
  async publish(room: string, from: User, body: MessageBody): Promise<Published> {
    const config = this.#requireConfig();
    this.#restore(config);
    return this.#publish(room, from, body, Date.now());
  }

  /** A page of stored messages. Reads only: a room that never existed stays without storage. */
  async readMessages(query: PageQuery): Promise<Page> {
    return this.#history.page(query);
  }

  /** Who is connected, and the latest seq. Reads only. */
  async info(): Promise<RoomInfo> {
    const config = this.#requireConfig();
    const connections = this.#restore(config);
    return { seq: this.#history.latestSeq, connections: this.#liveCount(connections), users: this.#presence.list() };
  }

  /** Closes every connection of `userId` with 4403; returns how many were closed. */
  async kick(userId: string): Promise<number> {
    const config = this.#requireConfig();
    const connections = this.#restore(config);
    let closed = 0;
    for (const ws of this.#liveSockets(tagForUser(userId))) {
      const conn = connections.get(ws);
      if (!conn) continue;
      this.#close(conn, CLOSE_CODES.forbidden, "kicked");
      closed++;
    }
    return closed;
  }

  #requireConfig(): Config {
    if (!this.#config) throw new Error("the room is misconfigured");
    return this.#config;
  }

  // -- connect -------------------------------------------------------------------------------

  #accept(handoff: Handoff, config: Config, connections: Map<WebSocket, Connection>): Response {
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    this.ctx.acceptWebSocket(server, [tagForUser(handoff.user.id)]);
    const now = Date.now();
    const attachment: Attachment = {
      id: crypto.randomUUID(),
      room: handoff.room,
      user: handoff.user,
      role: handoff.role,
      exp: handoff.exp,
      ip: handoff.ip,
      connectedAt: now,
      seenAt: now,
    };
    server.serializeAttachment(attachment);
    const conn: Connection = {
      ws: server,
      attachment,
      lastFrameAt: now,
      bucket: { tokens: config.rateLimitBurst, updatedAt: now, strikes: 0 },
      window: newReadWindow(),
      expectedEcho: undefined,
      isGone: false,
    };
    connections.set(server, conn);
    this.#broadcastList = undefined;
    const isFirst = this.#presence.add(handoff.user);
    try {
      this.#greet(conn, handoff, config, isFirst);
    } catch (error) {
      // Accepted but not greeted: close it and count it out rather than leave a ghost.
      log("error", "connect_failed", { ...this.#logFields(conn), ...describeError(error) });
      this.#close(conn, CLOSE_CODES.internalError, "internal error");
    }
    const headers = handoff.selectProtocol ? { "Sec-WebSocket-Protocol": SUBPROTOCOL } : undefined;
    return new Response(null, { status: 101, webSocket: client, headers });
  }

  /** Welcome, resume replay, and the `join` for the others. */
  #greet(conn: Connection, handoff: Handoff, config: Config, isFirst: boolean): void {
    const { ws: server, attachment } = conn;
    // The replay takes at most a quarter of the unread budget, so a reading client is never near it.
    const replayBytes = Math.min(REPLAY_MAX_BYTES, config.maxUnreadBytes * PROBE_FRACTION);
    const replay = handoff.since === undefined ? undefined : this.#history.after(handoff.since, replayBytes);
    const welcome: WelcomeFrame = {
      type: "welcome",
      room: handoff.room,
      connectionId: attachment.id,
      user: handoff.user,
      seq: this.#history.latestSeq,
      presence: this.#presence.list(),
      heartbeatInterval: config.heartbeatIntervalMs,
      ...(replay ? { recovered: replay.recovered } : {}),
    };
    // Counted, but not judged: the connection is not counted in yet, and it cannot be behind.
    this.#send(conn, JSON.stringify(welcome), false);
    for (const frame of replay?.frames ?? []) this.#send(conn, frame, false);
    if (isFirst) this.#broadcastPresence("join", handoff.user, server);
    log("info", "connection_open", {
      ...this.#logFields(conn),
      since: handoff.since,
      recovered: replay?.recovered,
      replayed: replay?.frames.length,
    });
  }

  // -- frames --------------------------------------------------------------------------------

  #onFrame(conn: Connection, message: string | ArrayBuffer, config: Config): void | Promise<void> {
    const now = Date.now();
    const size = typeof message === "string" ? utf8Length(message, config.maxMessageBytes) : message.byteLength;
    if (size > config.maxMessageBytes) {
      this.#close(conn, CLOSE_CODES.messageTooBig, `frame over ${config.maxMessageBytes} bytes`);
      return;
    }
    conn.lastFrameAt = now;
    if (message === conn.expectedEcho) {
      // Proof that the client read everything sent before that heartbeat. Once per heartbeat, so it
      // is exempt from the rate limit: a burst cannot make a reading client look like one that stopped.
      conn.attachment.awaiting = undefined;
      conn.expectedEcho = undefined;
      conn.window.read = conn.window.probed;
      this.#saveSeenAt(conn);
      return;
    }
    if (now - conn.attachment.seenAt >= config.heartbeatIntervalMs / 2) this.#saveSeenAt(conn);
    if (now >= conn.attachment.exp) {
      this.#close(conn, CLOSE_CODES.tokenExpired, "token expired");
      return;
    }

    const taken = take(conn.bucket, now, this.#limits);
    if (taken === "exhausted") {
      this.#close(conn, CLOSE_CODES.rateLimited, "rate limit exceeded");
      return;
    }
    if (taken === "refused") {
      // The id lets the client fail (or retry) that very send at once instead of at its ack timeout.
      this.#sendError(conn, "rate_limited", "too many frames; slow down", idOfRefused(message));
      return;
    }

    if (typeof message !== "string") {
      if (conn.attachment.role === "readonly") {
        this.#sendError(conn, "forbidden", "this connection is read-only");
      } else {
        this.#broadcast(message, conn.ws);
      }
      return;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(message);
    } catch {
      this.#sendError(conn, "invalid_json", "the frame is not valid JSON");
      return;
    }
    const frame = quickMessageFrame(raw, config.maxTextLength) ?? this.#parseFrame(conn, raw);
    if (frame === undefined) return;
    switch (frame.type) {
      case "ping":
        this.#send(conn, PONG_FRAME);
        return;
      case "heartbeat":
        // An echo of an older heartbeat, or a guess: activity, but no proof of reading.
        return;
      case "auth":
        return this.#refreshToken(conn, frame.token, config);
      case "history":
        this.#sendHistory(conn, frame.before, frame.limit, config);
        return;
      case "message":
        this.#onMessage(conn, frame, now);
        return;
    }
  }

  /** Validates a frame with the schema; answers `invalid_message` and returns nothing if it fails. */
  #parseFrame(conn: Connection, raw: unknown): ClientFrame | undefined {
    const parsed = v.safeParse(this.#frameSchema, raw);
    if (parsed.success) return parsed.output;
    const issue = parsed.issues[0];
    const path = v.getDotPath(issue);
    const text = `${path ? `${path}: ` : ""}${issue.message}`.slice(0, 200);
    this.#sendError(conn, "invalid_message", text, clientIdOf(raw));
    return undefined;
  }

  #onMessage(conn: Connection, frame: ClientMessageFrame, now: number): void {
    if (conn.attachment.role === "readonly") {
      this.#sendError(conn, "forbidden", "this connection is read-only", frame.id);
      return;
    }
    if (frame.to !== undefined) {
      this.#directMessage(conn, frame, frame.to, now);
      return;
    }
    const { seq } = this.#publish(conn.attachment.room, conn.attachment.user, frame, now);
    if (frame.id !== undefined) this.#send(conn, JSON.stringify({ type: "ack", id: frame.id, seq } satisfies AckFrame));
  }

  /**
   * Sequences, stores and broadcasts a room message. A message whose id its sender already used
   * while that message is still in the log is not stored or sent again: the first seq is returned
   * (so a client or backend that retries after a lost ack creates no duplicate).
   */
  #publish(room: string, from: User, body: MessageBody, now: number): Published {
    if (body.id !== undefined) {
      const first = this.#history.findById(from.id, body.id);
      if (first) return { ...first, isDuplicate: true };
    }
    const seq = this.#history.latestSeq + 1;
    const out: MessageFrame = {
      type: "message",
      seq,
      id: body.id,
      room,
      from,
      text: body.text,
      data: body.data,
      ts: now,
    };
    const frame = JSON.stringify(out);
    this.#history.append({ seq, ts: now, userId: from.id, messageId: body.id, frame });
    this.#broadcast(frame);
    return { seq, ts: now, isDuplicate: false };
  }

  // -- in-band token refresh and history -----------------------------------------------------

  async #refreshToken(conn: Connection, token: string, config: Config): Promise<void> {
    let identity: Identity;
    try {
      identity = await verifyToken(token, config);
    } catch (error) {
      const message =
        error instanceof HttpError && error.code === "invalid_token"
          ? error.message
          : "the token could not be verified";
      this.#sendError(conn, "invalid_token", message);
      return;
    }
    // The socket may have closed while the key set was fetched.
    if (conn.isGone) return;
    const a = conn.attachment;
    if (identity.userId !== a.user.id || !canAccessRoom(identity, a.room)) {
      this.#sendError(conn, "forbidden", "the new token is for another user or does not grant this room");
      this.#close(conn, CLOSE_CODES.forbidden, "forbidden");
      return;
    }
    a.exp = identity.exp;
    a.role = identity.role;
    a.user = { id: a.user.id, name: identity.name };
    conn.ws.serializeAttachment(a);
    this.#send(conn, JSON.stringify({ type: "auth", exp: identity.exp } satisfies AuthFrame));
    log("info", "token_refreshed", { ...this.#logFields(conn), exp: identity.exp });
  }

  #sendHistory(conn: Connection, before: number | undefined, limit: number, config: Config): void {
    // Small next to the unread budget, so a client paging back quickly stays well within it.
    const page = this.#history.page({ before, limit }, Math.min(PAGE_MAX_BYTES, config.maxUnreadBytes / 8));
    this.#send(conn, `{"type":"history","messages":${framesToJsonArray(page.frames)},"hasMore":${page.hasMore}}`);
  }

  #directMessage(conn: Connection, frame: ClientMessageFrame, to: string, now: number): void {
    const recipients = this.#liveSockets(tagForUser(to));
    if (recipients.length === 0) {
      this.#sendError(conn, "unknown_recipient", "that user has no connection in this room", frame.id);
      return;
    }
    const out: MessageFrame = {
      type: "message",
      id: frame.id,
      room: conn.attachment.room,
      from: conn.attachment.user,
      to,
      text: frame.text,
      data: frame.data,
      ts: now,
    };
    const text = JSON.stringify(out);
    const targets = new Set([...recipients, ...this.#liveSockets(tagForUser(conn.attachment.user.id))]);
    targets.delete(conn.ws);
    for (const ws of targets) {
      const target = this.#connections?.get(ws);
      if (target) this.#send(target, text);
    }
    if (frame.id !== undefined) this.#send(conn, JSON.stringify({ type: "ack", id: frame.id } satisfies AckFrame));
  }

  // -- connection bookkeeping ----------------------------------------------------------------

  /** The connection cache, rebuilt from the sockets' attachments after a wake. */
  #restore(config: Config): Map<WebSocket, Connection> {
    if (this.#connections) return this.#connections;
    const connections = new Map<WebSocket, Connection>();
    const now = Date.now();
    for (const ws of this.ctx.getWebSockets()) {
      const conn = restoreConnection(ws, config.rateLimitBurst, now);
      if (!conn) {
        log("error", "attachment_invalid", { attachment: "unreadable" });
        safeClose(ws, CLOSE_CODES.internalError, "internal error");
        continue;
      }
      connections.set(ws, conn);
      if (!conn.isGone) this.#presence.add(conn.attachment.user);
    }
    this.#connections = connections;
    return connections;
  }

  #liveCount(connections: Map<WebSocket, Connection>): number {
    let n = 0;
    for (const conn of connections.values()) if (!conn.isGone) n++;
    return n;
  }

  /** Open, counted-in sockets, optionally those of one tag. */
  #liveSockets(tag?: string): WebSocket[] {
    const connections = this.#connections;
    if (!connections) return [];
    return this.ctx.getWebSockets(tag).filter((ws) => {
      const conn = connections.get(ws);
      return conn !== undefined && !conn.isGone && ws.readyState === WebSocket.OPEN;
    });
  }

  /** Closes a connection from our side and counts it out. */
  #close(conn: Connection, code: number, reason: string): void {
    if (conn.isGone) return;
    markClosing(conn); // before close(): a closed socket may refuse a new attachment
    safeClose(conn.ws, code, reason);
    this.#countOut(conn, code, reason, "server");
  }

  /** The peer closed, or the socket failed. */
  #onGone(ws: WebSocket, code: number, reason: string): void {
    if (!this.#config) return;
    const connections = this.#restore(this.#config);
    const conn = connections.get(ws);
    if (conn && !conn.isGone) this.#countOut(conn, code, reason, "client");
    connections.delete(ws);
    if (conn?.isDying) {
      // Found closing at a wake, so never counted in: announce its user's leave if nobody is left.
      conn.isDying = false;
      const user = conn.attachment.user;
      if (this.#liveSockets(tagForUser(user.id)).length === 0 && !this.#presence.has(user.id)) {
        this.#broadcastPresence("leave", user);
      }
    }
    if (this.#liveCount(connections) === 0) {
      // An empty room keeps no alarm.
      this.#hasAlarm = false;
      this.ctx.storage.deleteAlarm().catch((error) => log("error", "alarm_delete_failed", describeError(error)));
    }
  }

  #countOut(conn: Connection, code: number, reason: string, by: "server" | "client"): void {
    conn.isGone = true;
    this.#broadcastList = undefined;
    markClosing(conn);
    log("info", "connection_close", {
      ...this.#logFields(conn),
      code,
      reason,
      by,
      durationMs: Date.now() - conn.attachment.connectedAt,
    });
    if (this.#presence.remove(conn.attachment.user.id)) this.#broadcastPresence("leave", conn.attachment.user);
  }

  #saveSeenAt(conn: Connection): void {
    conn.attachment.seenAt = conn.lastFrameAt;
    saveAttachment(conn);
  }

  #closeMisconfigured(ws: WebSocket): void {
    log("error", "room_misconfigured", {});
    safeClose(ws, CLOSE_CODES.internalError, "server misconfigured");
  }

  // -- sending -------------------------------------------------------------------------------

  /**
   * Sends to every counted-in connection. The list is kept between messages and rebuilt only when a
   * connection comes or goes: asking the runtime for every socket on every message is the costliest
   * part of a broadcast in a large room.
   */
  #broadcast(frame: string | ArrayBuffer, except?: WebSocket): void {
    if (this.#broadcastList === undefined) {
      if (this.#connections === undefined) return; // nothing restored yet: nobody to send to
      this.#broadcastList = [];
      for (const conn of this.#connections.values()) if (!conn.isGone) this.#broadcastList.push(conn);
    }
    const bytes = byteLength(frame);
    let behind: Connection[] | undefined;
    for (const conn of this.#broadcastList) {
      if (conn.ws === except || conn.ws.readyState !== WebSocket.OPEN) continue;
      trySend(conn.ws, frame);
      if (this.#countSent(conn, bytes)) {
        behind ??= [];
        behind.push(conn);
      }
    }
    // Closed after the loop: a close announces a leave, which is a broadcast of its own.
    for (const conn of behind ?? []) this.#closeNotReading(conn);
  }

  #broadcastPresence(event: PresenceFrame["event"], user: User, except?: WebSocket): void {
    const frame: PresenceFrame = { type: "presence", event, user, online: this.#presence.online };
    this.#broadcast(JSON.stringify(frame), except);
  }

  /** Sends to one connection; `judge: false` counts the bytes without closing a client behind. */
  #send(conn: Connection, frame: string, judge = true): void {
    trySend(conn.ws, frame);
    const isBehind = this.#countSent(conn, byteLength(frame));
    if (isBehind && judge) this.#closeNotReading(conn);
  }

  /**
   * Counts `bytes` sent to `conn`: sends an early heartbeat once a quarter of the budget is unread,
   * and says whether the client is past the budget (src/reading.ts).
   */
  #countSent(conn: Connection, bytes: number): boolean {
    conn.window.sent += bytes;
    const budget = this.#config?.maxUnreadBytes ?? Number.POSITIVE_INFINITY;
    const verdict = judgeUnread(conn.window, conn.attachment.awaiting !== undefined, budget);
    if (verdict === "probe") this.#sendHeartbeat(conn, Date.now());
    return verdict === "over";
  }

  #closeNotReading(conn: Connection): void {
    if (conn.isGone) return;
    log("warn", "slow_consumer", { ...this.#logFields(conn), unreadBytes: conn.window.sent - conn.window.read });
    this.#close(conn, CLOSE_CODES.heartbeatTimeout, "not reading");
  }

  #sendError(conn: Connection, code: FrameErrorCode, message: string, id?: string): void {
    const frame: ErrorFrame = { type: "error", code, message, ...(id === undefined ? {} : { id }) };
    this.#send(conn, JSON.stringify(frame));
  }

  #logFields(conn: Connection): Record<string, unknown> {
    const a = conn.attachment;
    return { room: a.room, connectionId: a.id, user: a.user.id, role: a.role, ip: a.ip };
  }
}
