/**
 * What members say in a room: room messages (sequenced, stored, broadcast, acknowledged once
 * durable), direct messages, and what they read back: resume replays and `history` pages, each
 * within the user's unread budget.
 */

import type { Config } from "../common/config";
import type { AckFrame, ClientMessageFrame, MessageFrame, User } from "../protocol";
import { byteLength } from "./bytes";
import { CommitQueue } from "./commit-queue";
import type { Connection } from "./connection";
import type { Connections } from "./connections";
import { type RelayDirect, sendDirect } from "./direct-messages";
import {
  framesToJsonArray,
  type History,
  PAGE_MAX_BYTES,
  type Page,
  type PageQuery,
  REPLAY_MAX_BYTES,
  type ReadLog,
  type Replay,
  type StoredMessage,
} from "./history";
import { contentHash } from "./message-ids";
import { PROBE_FRACTION } from "./reading";
import type { ReplyOrder, Step } from "./reply-order";
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

/** What became of a published message, once it is durable (or could not be stored). */
type Done = (result: Published | StoreFailed) => void;

/**
 * A history page is small next to the unread budget, so a client paging back quickly stays well
 * within it; and within what this user's sockets may still queue, so pages asked for and never read
 * cannot pile up over the user's connections.
 */
function pageBudget(conn: Connection, config: Config): number {
  const left = config.maxUnreadBytes - conn.owner.queued;
  return Math.min(PAGE_MAX_BYTES, config.maxUnreadBytes / 8, left);
}

/** A batch that held the message could not be stored: nothing of it was sent. */
export class StoreFailed extends Error {
  override readonly name = "StoreFailed";
}

export class Messages {
  readonly #history: History;
  readonly #connections: Connections;
  readonly #users: Users;
  readonly #queue: CommitQueue;
  /** What replays read: the history, or a shard's buffer of what it delivered. */
  readonly #reads: ReadLog;
  /** In a shard, room messages go to the orderer (src/room/shard-role.ts) instead of the queue. */
  forward: ((conn: Connection, frame: ClientMessageFrame) => void) | undefined;
  /**
   * In a sharded room, a direct message to a user with no connection here goes to the recipient's
   * object: resolves with how many connections got it there. `undefined`: the user would be here.
   */
  relayDirect: RelayDirect | undefined;
  /**
   * Each connection's answers in the order of its frames where the commit queue cannot give it alone
   * (src/room/reply-order.ts): on a shard (its room messages are answered by the orderer) and on the
   * orderer of a sharded room (a DM or signal to another object is answered when that object
   * answers). `undefined` in a single object, whose answers then cost no chain.
   */
  order: () => ReplyOrder | undefined = () => undefined;

  constructor(
    history: History,
    connections: Connections,
    users: Users,
    onCommitted?: (stored: StoredMessage[]) => void,
    reads: ReadLog = history,
  ) {
    this.#history = history;
    this.#reads = reads;
    this.#connections = connections;
    this.#users = users;
    this.#queue = new CommitQueue(history, onCommitted, {
      run: (frames) => connections.broadcastRun(frames),
      one: (frame, isPlainOnly) => connections.broadcast(frame, undefined, undefined, isPlainOnly),
    });
  }

  /** A `message` frame from a member: a room message, or a direct one with `to`. */
  onMessage(conn: Connection, frame: ClientMessageFrame, now: number): void {
    const connections = this.#connections;
    if (conn.attachment.role === "readonly") {
      this.reply(() => connections.sendError(conn, "forbidden", "this connection is read-only", frame.id), conn);
      return;
    }
    const to = frame.to;
    if (to !== undefined) {
      // After the sender's queued messages: a direct message never overtakes them. One to another
      // object holds the sender's later answers until that object answers (`reply`).
      this.reply(() => sendDirect(connections, this.relayDirect, conn, frame, to, now), conn);
      return;
    }
    if (this.forward) {
      this.forward(conn, frame);
      return;
    }
    // Answered in its place among the connection's answers: at once when it is committed (or found).
    this.#submit(conn.attachment.room, conn.attachment.user, frame, now, (result) => {
      if (result instanceof StoreFailed) {
        const text = "the message could not be stored; send it again";
        this.reply(() => connections.sendError(conn, "store_failed", text, frame.id), conn);
      } else if (frame.id === undefined) {
        // Nothing to acknowledge.
      } else if (result.outcome === "conflict") {
        const text = "this id was already used for a different message";
        this.reply(() => connections.sendError(conn, "id_conflict", text, frame.id), conn);
      } else {
        const ack = JSON.stringify({ type: "ack", id: frame.id, seq: result.seq } satisfies AckFrame);
        this.reply(() => connections.send(conn, ack), conn);
      }
    });
  }

  /**
   * Stores and sends what is queued now, before a connection is closed: its acks and its own
   * messages then reach it before the close frame, in the order it sent them.
   */
  flush(): void {
    this.#queue.flush();
  }

  /**
   * Runs `reply` once every message queued so far is sent: a connection's answers (errors, pongs,
   * pages, acks) then come in the order of the frames they answer, behind the acks of earlier
   * messages. In a sharded room, also behind what `conn` is still owed by another object
   * (src/room/reply-order.ts): a `reply` that returns a promise holds `conn`'s later answers until
   * it settles. (A shard queues no messages: there only the chain orders.)
   */
  reply(reply: Step, conn: Connection): void {
    this.#queue.after(() => {
      const order = this.order();
      if (order) order.after(conn, reply);
      else void reply();
    });
  }

  /**
   * Publishes like a socket message (the HTTP API's path); resolves once the message is durable.
   * `key`: an idempotency key for a message without an id (a shard's forwarded one), remembered like
   * an id but never put in the frame.
   */
  publish(room: string, from: User, body: MessageBody, now: number, key?: string): Promise<Published> {
    return new Promise((resolve, reject) => {
      this.#submit(
        room,
        from,
        body,
        now,
        (result) => (result instanceof StoreFailed ? reject(result) : resolve(result)),
        key,
      );
    });
  }

  /**
   * Sequences a room message and queues it to be stored with others that arrive close together
   * (src/room/commit-queue.ts); once durable it is broadcast and `done` is told. A message whose id its
   * sender used for a remembered or queued message is not stored or sent again: the same content
   * gets the first seq (so a client or backend that retries after a lost ack creates no duplicate),
   * other content a conflict.
   */
  #submit(room: string, from: User, body: MessageBody, now: number, done: Done, key?: string): void {
    const idKey = body.id ?? key;
    const hash = idKey === undefined ? undefined : contentHash(body.text, body.data);
    if (idKey !== undefined) {
      const first = this.#history.findById(from.id, idKey);
      if (first) {
        done({ seq: first.seq, ts: first.ts, outcome: first.contentHash === hash ? "duplicate" : "conflict" });
        return;
      }
      const queued = this.#queue.findQueued(from.id, idKey);
      if (queued) {
        const { seq, ts } = queued.stored;
        if (queued.stored.contentHash !== hash) {
          done({ seq, ts, outcome: "conflict" });
          return;
        }
        const { onStored, onFailed } = queued;
        queued.onStored = () => {
          onStored();
          done({ seq, ts, outcome: "duplicate" });
        };
        queued.onFailed = (error) => {
          onFailed(error);
          done(new StoreFailed("not stored", { cause: error }));
        };
        return;
      }
    }
    const seq = this.#queue.nextSeq;
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
    this.#queue.add({
      stored: { seq, ts: now, userId: from.id, messageId: idKey, contentHash: hash, frame },
      // Broadcast by the queue, before this runs (src/room/commit-queue.ts).
      onStored: () => done({ seq, ts: now, outcome: "stored" }),
      onFailed: (error) => done(new StoreFailed("not stored", { cause: error })),
    });
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
    const replay = this.#reads.after(since, maxBytes);
    const bytes = replay.frames.reduce((n, f) => n + byteLength(f), 0);
    // `after` keeps at least one message; over what is allowed, that one is a gap too.
    if (bytes > maxBytes) return { frames: [], recovered: false };
    this.#users.spendReplay(userId, bytes);
    return replay;
  }

  /** Answers a `history` request with a page, or `over_budget`, after what is queued. */
  sendHistory(conn: Connection, before: number | undefined, limit: number, config: Config): void {
    this.reply(() => this.#sendPage(conn, before, limit, config), conn);
  }

  /** A shard's `history` answer: the page read from the orderer with `read`, within the same budget. */
  async sendHistoryFrom(
    conn: Connection,
    before: number | undefined,
    limit: number,
    config: Config,
    read: (query: PageQuery, maxBytes: number) => Promise<Page>,
  ): Promise<void> {
    const order = this.order();
    if (!order) throw new Error("sendHistoryFrom is a shard's: it needs the shard's reply order");
    // Its place among the connection's answers is taken now: later frames are answered after it.
    const answer = order.hold(conn);
    const maxBytes = pageBudget(conn, config);
    try {
      const page = maxBytes > 0 ? await read({ before, limit }, maxBytes) : undefined;
      answer(() => this.#sendPageFrame(conn, page, config));
    } catch (error) {
      answer(() => undefined);
      throw error;
    }
  }

  #sendPage(conn: Connection, before: number | undefined, limit: number, config: Config): void {
    const maxBytes = pageBudget(conn, config);
    const page = maxBytes > 0 ? this.#history.page({ before, limit }, maxBytes) : undefined;
    this.#sendPageFrame(conn, page, config);
  }

  #sendPageFrame(conn: Connection, page: Page | undefined, config: Config): void {
    const left = config.maxUnreadBytes - conn.owner.queued;
    const frame = page && `{"type":"history","messages":${framesToJsonArray(page.frames)},"hasMore":${page.hasMore}}`;
    if (frame === undefined || byteLength(frame) > left) {
      const message = "too much is unread on this user's connections; read, then ask again";
      this.#connections.sendError(conn, "over_budget", message);
      return;
    }
    this.#connections.send(conn, frame);
  }
}
