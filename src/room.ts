/**
 * The room: one Durable Object per room id. It accepts connections with the WebSocket Hibernation
 * API, relays and stores messages, tracks presence, and runs the heartbeat alarm. Decisions that can
 * be pure live elsewhere (rate-limit, heartbeat, history, presence); this class orchestrates.
 */
import { DurableObject } from "cloudflare:workers";
import * as v from "valibot";
import { refuseConnect } from "./admission";
import { alarmForExpiry, HEARTBEAT_DUE_KEY, isRoundDue, nextAlarmAt } from "./alarm-plan";
import { canAccessRoom, type Identity, verifyToken } from "./auth";
import { byteLength, utf8Length } from "./bytes";
import type { Config } from "./config";
import { loadConfig } from "./config";
import { type Attachment, type Connection, logFieldsOf, tagForUser } from "./connection";
import { Connections } from "./connections";
import { HttpError } from "./errors";
import { HANDOFF_HEADER, type Handoff, HandoffSchema } from "./handoff";
import { judgeConnection } from "./heartbeat";
import { framesToJsonArray, History, PAGE_MAX_BYTES, type Page, type PageQuery, REPLAY_MAX_BYTES } from "./history";
import { describeError, log } from "./log";
import { contentHash } from "./message-ids";
import { Presence } from "./presence";
import {
  type AckFrame,
  type AuthFrame,
  type BinaryFrame,
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
import { type RateLimits, takeShared } from "./rate-limit";
import { newReadWindow, PROBE_FRACTION } from "./reading";
import { clientIdOf, idOfRefused, isReservedCloseCode, safeClose, saveAttachment } from "./socket-chores";
import { Users } from "./users";

/** The content of a room message, from a socket frame or an HTTP body. */
export interface MessageBody {
  text?: string;
  data?: unknown;
  id?: string;
}

export interface Published {
  /** The message's seq and ts; for a reused id, the first message's. */
  seq: number;
  ts: number;
  /**
   * `stored` and sent; `duplicate`: the sender's id and content matched a remembered message, which
   * was not sent again; `conflict`: the id was remembered with other content, and nothing was done.
   */
  outcome: "stored" | "duplicate" | "conflict";
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
  /** The bucket each user shares over all its connections. */
  readonly #userLimits: RateLimits;
  /** Per-user state in this room: shared buckets and queued bytes (src/users.ts). */
  readonly #users: Users;
  /** Users whose last connection went, until PRESENCE_GRACE_MS decides whether that was a leave. */
  readonly #leaveTimers = new Map<string, number>();
  /** Who is here, and every send to them. */
  readonly #connections: Connections;
  #presence = new Presence();
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
    this.#userLimits = {
      perSecond: this.#config?.userRateLimitPerSecond ?? 1,
      burst: this.#config?.userRateLimitBurst ?? 1,
      maxStrikes: this.#config?.rateLimitStrikes ?? 1,
    };
    this.#users = new Users({
      messages: this.#userLimits,
      connectsPerMinute: this.#config?.connectsPerUserPerMinute ?? 1,
      replayBytesPerMinute: this.#config?.replayBytesPerUserPerMinute ?? 0,
    });
    this.#history = new History(ctx.storage, this.#config?.historyLimit ?? 0);
    // With a bad config every entry point stops before using it, so its fallbacks never matter.
    const settings = {
      rateLimitBurst: this.#config?.rateLimitBurst ?? 1,
      maxUnreadBytes: this.#config?.maxUnreadBytes ?? 0,
      roomMaxQueuedBytes: this.#config?.roomMaxQueuedBytes ?? 0,
    };
    const hooks = {
      restored: (conn: Connection) => this.#presence.add(conn.attachment.user),
      countedOut: (conn: Connection) => this.#lastMaybeGone(conn.attachment.user),
    };
    this.#connections = new Connections(ctx, settings, hooks, this.#users);
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
      this.#connections.all(); // counts the sockets' queued bytes in after a wake
      const refusal = refuseConnect(this.ctx, handoff.output, config, this.#users, Date.now());
      if (refusal !== undefined) {
        const { room, user, ip } = handoff.output;
        log("info", "gate_refused", { room, user: user.id, ip, status: refusal.status, code: refusal.code });
        return refusal.toResponse();
      }
      await this.#alarmBy(handoff.output.exp, config);
      return this.#accept(handoff.output, config);
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
    const conn = this.#connections.all().get(ws);
    if (!conn || conn.isGone) return;
    try {
      await this.#onFrame(conn, message, config);
    } catch (error) {
      log("error", "frame_failed", { ...logFieldsOf(conn), ...describeError(error) });
      this.#connections.close(conn, CLOSE_CODES.internalError, "internal error");
    }
  }

  override async webSocketClose(ws: WebSocket, code: number, reason: string): Promise<void> {
    // Answer the peer's close frame. Newer compatibility dates make the runtime do it (and ignore
    // this call), but wrangler 4.86's local runtime leaves hibernatable sockets half-closed without it.
    safeClose(ws, isReservedCloseCode(code) ? CLOSE_CODES.normal : code, reason);
    this.#onGone(ws, code, reason);
  }

  override async webSocketError(ws: WebSocket, error: unknown): Promise<void> {
    const conn = this.#connections.peek(ws);
    log("warn", "socket_error", { ...(conn ? logFieldsOf(conn) : {}), ...describeError(error) });
    this.#onGone(ws, 1006, "socket error");
  }

  override async alarm(): Promise<void> {
    // At-least-once and retried: a repeat finds the round done (its due time is stored) and closes
    // only what has expired since.
    const config = this.#config;
    if (!config) return;
    const connections = this.#connections;
    const now = Date.now();
    const dueAt = await this.ctx.storage.get<number>(HEARTBEAT_DUE_KEY);
    const isRound = isRoundDue(now, dueAt, config.heartbeatIntervalMs);
    try {
      connections.reconcile();
      this.#users.prune(now, (userId) => this.ctx.getWebSockets(tagForUser(userId)).length > 0);
      for (const conn of connections.all().values()) {
        if (conn.isGone) continue;
        // One connection's failure must not stop the heartbeat for the others.
        try {
          this.#heartbeat(conn, now, config, isRound);
        } catch (error) {
          log("error", "heartbeat_failed", { ...logFieldsOf(conn), ...describeError(error) });
          connections.close(conn, CLOSE_CODES.internalError, "internal error");
        }
      }
      connections.enforceBudgets(now);
    } finally {
      // Rescheduled whatever happened above, or the room would keep live sockets with no alarm.
      const live = [...connections.all().values()].filter((conn) => !conn.isGone);
      this.#hasAlarm = live.length > 0;
      if (this.#hasAlarm) {
        const roundAt = isRound || dueAt === undefined ? now + config.heartbeatIntervalMs : dueAt;
        if (isRound) await this.ctx.storage.put(HEARTBEAT_DUE_KEY, roundAt);
        this.#alarmDueAt = nextAlarmAt(
          now,
          roundAt,
          live.map((conn) => conn.attachment.exp),
        );
        await this.ctx.storage.setAlarm(this.#alarmDueAt);
      }
    }
  }

  /**
   * Makes sure an alarm is set, by `exp` at the latest. Storage's alarm is read once per wake, not
   * per connect: after that this object keeps track itself, and looks again only if the alarm is
   * overdue (its retries ran out, say).
   */
  async #alarmBy(exp: number, config: Config): Promise<void> {
    const now = Date.now();
    let isUnset = false;
    if (!this.#hasAlarm || now > this.#alarmDueAt + config.heartbeatIntervalMs) {
      const current = await this.ctx.storage.getAlarm();
      isUnset = current === null || current < now;
      if (current === null) {
        // The room's first connection (again): the heartbeat rounds start from now.
        this.#alarmDueAt = now + config.heartbeatIntervalMs;
        await this.ctx.storage.put(HEARTBEAT_DUE_KEY, this.#alarmDueAt);
      } else {
        this.#alarmDueAt = current;
      }
      this.#hasAlarm = true;
    }
    const at = alarmForExpiry(this.#alarmDueAt, exp, now) ?? (isUnset ? Math.max(this.#alarmDueAt, now) : undefined);
    if (at === undefined) return;
    this.#alarmDueAt = at;
    await this.ctx.storage.setAlarm(at);
  }

  /** Closes `conn` if its token expired, it went quiet or it stopped reading; at a round, heartbeats it. */
  #heartbeat(conn: Connection, now: number, config: Config, isRound: boolean): void {
    const pinged = this.ctx.getWebSocketAutoResponseTimestamp(conn.ws)?.getTime() ?? 0;
    const verdict = judgeConnection({
      now,
      exp: conn.attachment.exp,
      lastActivity: Math.max(conn.lastFrameAt, conn.attachment.connectedAt, pinged),
      unechoedSince: conn.attachment.awaiting?.since,
      timeoutMs: config.heartbeatTimeoutMs,
    });
    if (verdict.action === "close") {
      this.#connections.close(conn, verdict.code, verdict.reason);
      return;
    }
    if (this.#connections.isBehind(conn, now)) {
      // Over the unread budget and late: a burst that ended, or a room gone quiet, sends nothing
      // more that would have judged it.
      this.#connections.closeBehind(conn);
      return;
    }
    if (!isRound) return;
    conn.attachment.seenAt = Math.max(conn.attachment.seenAt, conn.lastFrameAt);
    this.#connections.sendHeartbeat(conn, now); // saves the attachment, seenAt with it
  }

  // -- RPC for the HTTP API (the Worker has already checked the token and the role) ------------

  /** Publishes a message as `from`, exactly like one sent over a socket. */
  async publish(room: string, from: User, body: MessageBody): Promise<Published> {
    this.#requireConfig();
    this.#connections.all();
    return this.#publish(room, from, body, Date.now());
  }

  /** A page of stored messages. Reads only: a room that never existed stays without storage. */
  async readMessages(query: PageQuery): Promise<Page> {
    return this.#history.page(query);
  }

  /** Who is connected, and the latest seq. Reads only. */
  async info(): Promise<RoomInfo> {
    this.#requireConfig();
    return {
      seq: this.#history.latestSeq,
      connections: this.#connections.liveCount(),
      users: this.#presence.list(),
    };
  }

  /** Closes every connection of `userId` with 4403; returns how many were closed. */
  async kick(userId: string): Promise<number> {
    this.#requireConfig();
    const kicked = this.#connections.live(tagForUser(userId));
    for (const conn of kicked) this.#connections.close(conn, CLOSE_CODES.forbidden, "kicked");
    return kicked.length;
  }

  #requireConfig(): Config {
    if (!this.#config) throw new Error("the room is misconfigured");
    return this.#config;
  }

  // -- connect -------------------------------------------------------------------------------

  #accept(handoff: Handoff, config: Config): Response {
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
      owner: this.#users.get(handoff.user.id, now),
      window: newReadWindow(),
      isGone: false,
    };
    this.#connections.add(conn);
    const isFirst = this.#presence.add(handoff.user);
    this.#cancelLeave(handoff.user.id); // back within the grace: neither a leave nor a join

    try {
      this.#greet(conn, handoff, config, isFirst);
    } catch (error) {
      // Accepted but not greeted: close it and count it out rather than leave a ghost.
      log("error", "connect_failed", { ...logFieldsOf(conn), ...describeError(error) });
      this.#connections.close(conn, CLOSE_CODES.internalError, "internal error");
    }
    const headers = handoff.selectProtocol ? { "Sec-WebSocket-Protocol": SUBPROTOCOL } : undefined;
    return new Response(null, { status: 101, webSocket: client, headers });
  }

  /** Welcome, resume replay, and the `join` for the others. */
  #greet(conn: Connection, handoff: Handoff, config: Config, isFirst: boolean): void {
    const { ws: server, attachment } = conn;
    const replay = handoff.since === undefined ? undefined : this.#replay(conn, handoff.since, config);
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
    // Counted, but not judged: a connection is never behind on what it is greeted with.
    this.#connections.send(conn, JSON.stringify(welcome), false);
    for (const frame of replay?.frames ?? []) this.#connections.send(conn, frame, false);
    if (isFirst) this.#broadcastPresence("join", handoff.user, server);
    log("info", "connection_open", {
      ...logFieldsOf(conn),
      since: handoff.since,
      recovered: replay?.recovered,
      replayed: replay?.frames.length,
    });
  }

  // -- frames --------------------------------------------------------------------------------

  #onFrame(conn: Connection, message: string | ArrayBuffer, config: Config): void | Promise<void> {
    const connections = this.#connections;
    const now = Date.now();
    const size = typeof message === "string" ? utf8Length(message, config.maxMessageBytes) : message.byteLength;
    if (size > config.maxMessageBytes) {
      connections.close(conn, CLOSE_CODES.messageTooBig, `frame over ${config.maxMessageBytes} bytes`);
      return;
    }
    conn.lastFrameAt = now;
    if (connections.takeEcho(conn, message)) {
      // Proof that the client read everything sent before that heartbeat. Once per heartbeat, so it
      // is exempt from the rate limit: a burst cannot make a reading client look like one that stopped.
      this.#saveSeenAt(conn);
      return;
    }
    if (now - conn.attachment.seenAt >= config.heartbeatIntervalMs / 2) this.#saveSeenAt(conn);
    if (now >= conn.attachment.exp) {
      connections.close(conn, CLOSE_CODES.tokenExpired, "token expired");
      return;
    }

    const taken = takeShared(conn.bucket, conn.owner.messages, now, this.#limits, this.#userLimits);
    if (taken === "exhausted") {
      connections.close(conn, CLOSE_CODES.rateLimited, "rate limit exceeded");
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
        // Attributed by a text frame right before it: receivers can tell who sent it.
        const from: BinaryFrame = { type: "binary", from: conn.attachment.user };
        connections.broadcast(message, conn.ws, JSON.stringify(from));
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
    const { seq, outcome } = this.#publish(conn.attachment.room, conn.attachment.user, frame, now);
    if (frame.id === undefined) return;
    if (outcome === "conflict") {
      this.#sendError(conn, "id_conflict", "this id was already used for a different message", frame.id);
      return;
    }
    this.#send(conn, JSON.stringify({ type: "ack", id: frame.id, seq } satisfies AckFrame));
  }

  /**
   * Sequences, stores and broadcasts a room message. A message whose id its sender used for a
   * remembered message (src/message-ids.ts) is not stored or sent again: the same content gets the
   * first seq (so a client or backend that retries after a lost ack creates no duplicate), other
   * content a conflict.
   */
  #publish(room: string, from: User, body: MessageBody, now: number): Published {
    const hash = body.id === undefined ? undefined : contentHash(body.text, body.data);
    if (body.id !== undefined) {
      const first = this.#history.findById(from.id, body.id);
      if (first) {
        const outcome = first.contentHash === hash ? "duplicate" : "conflict";
        return { seq: first.seq, ts: first.ts, outcome };
      }
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
    this.#history.append({ seq, ts: now, userId: from.id, messageId: body.id, contentHash: hash, frame });
    this.#connections.broadcast(frame);
    return { seq, ts: now, outcome: "stored" };
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
      this.#connections.close(conn, CLOSE_CODES.forbidden, "forbidden");
      return;
    }
    a.exp = identity.exp;
    a.role = identity.role;
    a.user = { id: a.user.id, name: identity.name };
    saveAttachment(conn); // the socket may be closing by now
    this.#send(conn, JSON.stringify({ type: "auth", exp: identity.exp } satisfies AuthFrame));
    log("info", "token_refreshed", { ...logFieldsOf(conn), exp: identity.exp });
    // A sooner expiry moves the alarm; a later one leaves it, and its wake plans again.
    await this.#alarmBy(identity.exp, config);
  }

  /**
   * The resume replay after `since`: at most a quarter of the unread budget (a reading client is
   * never near it), within what the user's sockets may still queue and its replay bytes per minute,
   * so reconnecting in a loop cannot multiply the work or the memory.
   */
  #replay(conn: Connection, since: number, config: Config) {
    const userId = conn.attachment.user.id;
    const left = config.maxUnreadBytes - conn.owner.queued;
    const allowance = this.#users.replayAllowance(userId, Date.now());
    const maxBytes = Math.min(REPLAY_MAX_BYTES, config.maxUnreadBytes * PROBE_FRACTION, left, allowance);
    const replay = this.#history.after(since, maxBytes);
    const bytes = replay.frames.reduce((n, f) => n + byteLength(f), 0);
    // `after` keeps at least one message; over what is allowed, that one is a gap too.
    if (bytes > maxBytes) return { frames: [], recovered: false };
    this.#users.spendReplay(userId, bytes);
    return replay;
  }

  #sendHistory(conn: Connection, before: number | undefined, limit: number, config: Config): void {
    // Small next to the unread budget, so a client paging back quickly stays well within it; and
    // within what this user's sockets may still queue, so pages asked for and never read cannot
    // pile up over the user's connections.
    const left = config.maxUnreadBytes - conn.owner.queued;
    const maxBytes = Math.min(PAGE_MAX_BYTES, config.maxUnreadBytes / 8, left);
    const page = maxBytes > 0 ? this.#history.page({ before, limit }, maxBytes) : undefined;
    const frame = page && `{"type":"history","messages":${framesToJsonArray(page.frames)},"hasMore":${page.hasMore}}`;
    if (frame === undefined || byteLength(frame) > left) {
      this.#sendError(conn, "over_budget", "too much is unread on this user's connections; read, then ask again");
      return;
    }
    this.#send(conn, frame);
  }

  #directMessage(conn: Connection, frame: ClientMessageFrame, to: string, now: number): void {
    const connections = this.#connections;
    const recipients = connections.live(tagForUser(to));
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
    const targets = new Set([...recipients, ...connections.live(tagForUser(conn.attachment.user.id))]);
    targets.delete(conn);
    for (const target of targets) connections.send(target, text);
    if (frame.id !== undefined) this.#send(conn, JSON.stringify({ type: "ack", id: frame.id } satisfies AckFrame));
  }

  // -- connection bookkeeping ----------------------------------------------------------------

  /** The peer closed, or the socket failed. */
  #onGone(ws: WebSocket, code: number, reason: string): void {
    if (!this.#config) return;
    const connections = this.#connections;
    const conn = connections.forget(ws, code, reason);
    if (conn?.isDying) {
      // Found closing at a wake, so never counted in: announce its user's leave if nobody is left.
      conn.isDying = false;
      const user = conn.attachment.user;
      if (connections.live(tagForUser(user.id)).length === 0 && !this.#presence.has(user.id)) {
        this.#broadcastPresence("leave", user);
      }
    }
    if (connections.liveCount() === 0) {
      // An empty room keeps no alarm.
      this.#hasAlarm = false;
      this.ctx.storage.deleteAlarm().catch((error) => log("error", "alarm_delete_failed", describeError(error)));
    }
  }

  /**
   * A connection was counted out. When it was its user's last, the `leave` waits PRESENCE_GRACE_MS
   * for a reconnect. A plain timer, not the alarm: it keeps the object awake for the grace only,
   * and an eviction meanwhile drops every socket, so every client gets a fresh `welcome.presence`.
   */
  #lastMaybeGone(user: User): void {
    const grace = this.#config?.presenceGraceMs ?? 0;
    if (!this.#presence.remove(user.id, grace > 0)) return;
    if (grace === 0) {
      this.#broadcastPresence("leave", user);
      return;
    }
    this.#cancelLeave(user.id);
    const timer = setTimeout(() => {
      this.#leaveTimers.delete(user.id);
      try {
        if (this.#presence.settle(user.id)) this.#broadcastPresence("leave", user);
      } catch (error) {
        log("error", "presence_failed", { user: user.id, ...describeError(error) });
      }
    }, grace);
    this.#leaveTimers.set(user.id, timer);
  }

  #cancelLeave(userId: string): void {
    const timer = this.#leaveTimers.get(userId);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.#leaveTimers.delete(userId);
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

  #broadcastPresence(event: PresenceFrame["event"], user: User, except?: WebSocket): void {
    const frame: PresenceFrame = { type: "presence", event, user, online: this.#presence.online };
    this.#connections.broadcast(JSON.stringify(frame), except);
  }

  #send(conn: Connection, frame: string): void {
    this.#connections.send(conn, frame);
  }

  #sendError(conn: Connection, code: FrameErrorCode, message: string, id?: string): void {
    const frame: ErrorFrame = { type: "error", code, message, ...(id === undefined ? {} : { id }) };
    this.#send(conn, JSON.stringify(frame));
  }
}
