/**
 * What members say in a room: room messages (sequenced, stored, broadcast, acknowledged once
 * durable), direct messages, and what they read back: resume replays and `history` pages, each
 * within the user's unread budget.
 */
import { byteLength } from "./bytes";
import type { Config } from "./config";
import { type Connection, tagForUser } from "./connection";
import type { Connections } from "./connections";
import { framesToJsonArray, type History, PAGE_MAX_BYTES, REPLAY_MAX_BYTES, type Replay } from "./history";
import { contentHash } from "./message-ids";
import type { AckFrame, ClientMessageFrame, MessageFrame, User } from "./protocol";
import { PROBE_FRACTION } from "./reading";
import type { Users } from "./users";

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

export class Messages {
  readonly #history: History;
  readonly #connections: Connections;
  readonly #users: Users;

  constructor(history: History, connections: Connections, users: Users) {
    this.#history = history;
    this.#connections = connections;
    this.#users = users;
  }

  /** A `message` frame from a member: a room message, or a direct one with `to`. */
  onMessage(conn: Connection, frame: ClientMessageFrame, now: number): void {
    const connections = this.#connections;
    if (conn.attachment.role === "readonly") {
      connections.sendError(conn, "forbidden", "this connection is read-only", frame.id);
      return;
    }
    if (frame.to !== undefined) {
      this.#direct(conn, frame, frame.to, now);
      return;
    }
    const { seq, outcome } = this.publish(conn.attachment.room, conn.attachment.user, frame, now);
    if (frame.id === undefined) return;
    if (outcome === "conflict") {
      connections.sendError(conn, "id_conflict", "this id was already used for a different message", frame.id);
      return;
    }
    // Sent after the write in the same turn: the output gate holds it until the write is durable.
    connections.send(conn, JSON.stringify({ type: "ack", id: frame.id, seq } satisfies AckFrame));
  }

  /**
   * Sequences, stores and broadcasts a room message. A message whose id its sender used for a
   * remembered message (src/message-ids.ts) is not stored or sent again: the same content gets the
   * first seq (so a client or backend that retries after a lost ack creates no duplicate), other
   * content a conflict.
   */
  publish(room: string, from: User, body: MessageBody, now: number): Published {
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

  /**
   * The resume replay after `since`: at most a quarter of the unread budget (a reading client is
   * never near it), within what the user's sockets may still queue and its replay bytes per minute,
   * so reconnecting in a loop cannot multiply the work or the memory.
   */
  replay(conn: Connection, since: number, config: Config): Replay {
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

  /** Answers a `history` request with a page, or `over_budget`. */
  sendHistory(conn: Connection, before: number | undefined, limit: number, config: Config): void {
    // Small next to the unread budget, so a client paging back quickly stays well within it; and
    // within what this user's sockets may still queue, so pages asked for and never read cannot
    // pile up over the user's connections.
    const left = config.maxUnreadBytes - conn.owner.queued;
    const maxBytes = Math.min(PAGE_MAX_BYTES, config.maxUnreadBytes / 8, left);
    const page = maxBytes > 0 ? this.#history.page({ before, limit }, maxBytes) : undefined;
    const frame = page && `{"type":"history","messages":${framesToJsonArray(page.frames)},"hasMore":${page.hasMore}}`;
    if (frame === undefined || byteLength(frame) > left) {
      const message = "too much is unread on this user's connections; read, then ask again";
      this.#connections.sendError(conn, "over_budget", message);
      return;
    }
    this.#connections.send(conn, frame);
  }

  /** To the recipient's connections and the sender's others; not stored, no seq. */
  #direct(conn: Connection, frame: ClientMessageFrame, to: string, now: number): void {
    const connections = this.#connections;
    const recipients = connections.live(tagForUser(to));
    if (recipients.length === 0) {
      connections.sendError(conn, "unknown_recipient", "that user has no connection in this room", frame.id);
      return;
    }
    const { room, user: from } = conn.attachment;
    const out: MessageFrame = {
      type: "message",
      id: frame.id,
      room,
      from,
      to,
      text: frame.text,
      data: frame.data,
      ts: now,
    };
    const text = JSON.stringify(out);
    const targets = new Set([...recipients, ...connections.live(tagForUser(from.id))]);
    targets.delete(conn);
    for (const target of targets) connections.send(target, text);
    if (frame.id !== undefined)
      connections.send(conn, JSON.stringify({ type: "ack", id: frame.id } satisfies AckFrame));
  }
}
