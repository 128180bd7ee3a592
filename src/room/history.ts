/**
 * The room's message log in the object's SQLite storage: the newest `limit` messages, each stored as
 * the exact frame text that was broadcast (replayed as is), and the sequence counter.
 *
 * The schema is created on the first write, so reading a room that never existed writes nothing.
 * The runtime's output gate holds every frame sent in an event until that event's writes are
 * durable: no client sees a `seq` (or an ack) that could be lost.
 */
import { byteLength } from "./bytes";
import { idWindow, MESSAGE_IDS_SCHEMA, MessageIds, type SeenId } from "./message-ids";

export interface Replay {
  frames: string[];
  /** False when the log no longer holds every message after the asked seq. */
  recovered: boolean;
}

export interface Page {
  /** Stored frame texts, in seq order. */
  frames: string[];
  hasMore: boolean;
}

/** What a room reads its log through: the History itself, or a shard's buffer (src/room/shard-log.ts). */
export interface ReadLog {
  readonly latestSeq: number;
  after(since: number, maxBytes: number): Replay;
  page(query: PageQuery, maxBytes?: number): Page;
}

export type PageQuery = { since: number; limit: number } | { before?: number; limit: number };

export interface StoredMessage {
  seq: number;
  ts: number;
  userId: string;
  /** The sender's message id: an idempotency key per user (src/room/message-ids.ts). */
  messageId: string | undefined;
  /** `contentHash` of the content, kept with the id to tell a retry from a reuse. */
  contentHash?: number;
  frame: string;
}

/**
 * A resuming connection gets at most about this many bytes of replay (the newest messages), so a
 * `?since=0` into a full history of large messages cannot pin tens of MiB per socket. Past it,
 * `recovered` is false and the client pages the rest with `history` frames or the HTTP API.
 */
export const REPLAY_MAX_BYTES = 4 * 1024 * 1024;

/** A history page (socket or HTTP) holds at most about this many bytes, and always one message. */
export const PAGE_MAX_BYTES = 1024 * 1024;

/**
 * Old rows are deleted every this many messages rather than on each one (a write saved per message);
 * reads only ever see the newest `limit`, so the few extra rows are invisible.
 */
export const TRIM_EVERY = 16;

export class History implements ReadLog {
  #hasSchema: boolean;
  /** Whether the id table exists (rooms from before it have the log without it). */
  #hasIds: boolean;
  /** Whether the log's old unique index of ids exists: its rows may still hold ids to honour. */
  readonly #hasLegacyIds: boolean;
  #seq: number | undefined;
  readonly #sql: SqlStorage;
  readonly #storage: DurableObjectStorage;
  readonly #ids: MessageIds;

  constructor(
    storage: DurableObjectStorage,
    /** How many of the newest messages the log keeps (HISTORY_LIMIT). */
    readonly limit: number,
  ) {
    this.#sql = storage.sql;
    this.#storage = storage;
    this.#ids = new MessageIds(storage.sql);
    const names = new Set(
      this.#sql
        .exec<{ name: string }>(
          "SELECT name FROM sqlite_master WHERE name IN ('room_meta', 'message_ids', 'messages_by_sender_id')",
        )
        .toArray()
        .map((row) => row.name),
    );
    this.#hasSchema = names.has("room_meta");
    this.#hasIds = names.has("message_ids");
    this.#hasLegacyIds = names.has("messages_by_sender_id");
  }

  /**
   * The latest seq handed out; 0 for a room that never had a message. The log always keeps its
   * newest message, so that is its seq; `room_meta` carries the counter only while the log is kept
   * empty (HISTORY_LIMIT=0), which saves a write per message, and not even then for a message with
   * an id: its row in the id table carries its seq.
   */
  get latestSeq(): number {
    if (this.#seq === undefined) {
      const ids = this.#hasIds ? ", COALESCE((SELECT MAX(seq) FROM message_ids), 0)" : "";
      const row = this.#hasSchema
        ? this.#sql
            .exec<{ seq: number }>(
              `SELECT MAX(COALESCE((SELECT MAX(seq) FROM messages), 0), COALESCE((SELECT value FROM room_meta WHERE key = 'seq'), 0)${ids}) AS seq`,
            )
            .one()
        : undefined;
      this.#seq = row?.seq ?? 0;
    }
    return this.#seq;
  }

  /** The oldest seq still visible in the log. */
  get #floor(): number {
    return this.latestSeq - this.limit;
  }

  /**
   * The message `userId` sent with `messageId`, if the id is still remembered: among the newest
   * `idWindow(limit)` messages (src/room/message-ids.ts), or, in a room from before the id table, in the log.
   */
  findById(userId: string, messageId: string): SeenId | undefined {
    if (!this.#hasSchema) return undefined;
    const seen = this.#hasIds ? this.#ids.find(userId, messageId) : undefined;
    return seen ?? (this.#hasLegacyIds ? this.#ids.findInLog(userId, messageId) : undefined);
  }

  /** Stores message `seq`, which must be `latestSeq + 1` (a batch of one). */
  append(message: StoredMessage): void {
    this.appendBatch([message]);
  }

  /**
   * Stores consecutive messages from `latestSeq + 1` on: their log rows (or the counter) and their
   * ids' rows, in one transaction, so if any write fails nothing changed; once they all succeeded
   * the counter moves on. One batch is one commit, however many messages it holds.
   */
  appendBatch(messages: readonly StoredMessage[]): void {
    const first = messages[0];
    const last = messages.at(-1);
    if (first === undefined || last === undefined) return;
    messages.forEach((m, i) => {
      if (m.seq !== this.latestSeq + 1 + i) throw new Error(`seq ${m.seq} does not follow ${this.latestSeq + i}`);
    });
    this.#ensureSchema();
    this.#storage.transactionSync(() => {
      for (const message of messages) this.#insert(message);
    });
    this.#seq = last.seq;
    // Trimmed when the batch crossed a multiple of TRIM_EVERY (a batch may jump over several); a
    // range, so that lowering HISTORY_LIMIT trims the surplus too.
    const crossed = Math.floor(last.seq / TRIM_EVERY) > Math.floor((first.seq - 1) / TRIM_EVERY);
    if (this.limit === 0 || crossed) this.#sql.exec("DELETE FROM messages WHERE seq <= ?", this.#floor);
    if (crossed) this.#ids.trim(last.seq - idWindow(this.limit));
  }

  #insert(message: StoredMessage): void {
    const { seq, messageId } = message;
    // A reused (sender, id) fails here, on the table's key.
    if (messageId !== undefined) {
      this.#ids.remember(message.userId, messageId, { seq, ts: message.ts, contentHash: message.contentHash ?? 0 });
    }
    if (this.limit > 0) {
      // The id lives in the id table, not here: no index row to write per message.
      this.#sql.exec(
        "INSERT INTO messages (seq, ts, user_id, msg_id, frame) VALUES (?, ?, ?, NULL, ?)",
        seq,
        message.ts,
        message.userId,
        message.frame,
      );
    } else if (messageId === undefined) {
      this.#sql.exec(
        "INSERT INTO room_meta (key, value) VALUES ('seq', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        seq,
      );
    }
  }

  /**
   * The stored frames after `since`, in seq order, for a resuming connection: all of them, or the
   * newest that fit in `maxBytes`, never below one (so any gap is at the start, where `history`
   * paging can fill it).
   */
  after(since: number, maxBytes = REPLAY_MAX_BYTES): Replay {
    const latest = this.latestSeq;
    // A client ahead of the room saw messages this log never had (the room was reset): a gap.
    if (since >= latest) return { frames: [], recovered: since === latest };
    // Read row by row and stopped at the budget: a long log of large messages is never all loaded.
    const newestFirst = this.#hasSchema
      ? withinBytes(
          this.#frameRows("SELECT frame FROM messages WHERE seq > ? ORDER BY seq DESC", Math.max(since, this.#floor)),
          maxBytes,
        )
      : [];
    const frames = newestFirst.reverse();
    return { frames, recovered: frames.length === latest - since };
  }

  /**
   * One page of stored frames in seq order: the first `limit` after `since`, or the last `limit`
   * before `before` (the newest page when neither is given), cut short at about `maxBytes` (never
   * below one message). `hasMore` says whether the log holds more in the direction of paging.
   */
  page(query: PageQuery, maxBytes = PAGE_MAX_BYTES): Page {
    if (!this.#hasSchema) return { frames: [], hasMore: false };
    const floor = this.#floor;
    const n = query.limit;
    if ("since" in query) {
      const frames = this.#frames(
        "SELECT frame FROM messages WHERE seq > ? ORDER BY seq LIMIT ?",
        Math.max(query.since, floor),
        n + 1,
      );
      const kept = withinBytes(frames.slice(0, n), maxBytes);
      return { frames: kept, hasMore: frames.length > kept.length };
    }
    const before = query.before ?? Number.MAX_SAFE_INTEGER;
    const newestFirst = this.#frames(
      "SELECT frame FROM messages WHERE seq < ? AND seq > ? ORDER BY seq DESC LIMIT ?",
      before,
      floor,
      n + 1,
    );
    const kept = withinBytes(newestFirst.slice(0, n), maxBytes);
    return { frames: kept.reverse(), hasMore: newestFirst.length > kept.length };
  }

  /** Up to `limit` stored frames after `since`, oldest first, and the seq of the first (a shard's catch-up). */
  range(since: number, limit: number): { from: number; frames: string[] } {
    const from = Math.max(since, this.#floor) + 1;
    if (!this.#hasSchema) return { from, frames: [] };
    return { from, frames: this.page({ since, limit }).frames };
  }

  *#frameRows(query: string, ...bindings: number[]): Generator<string> {
    for (const row of this.#sql.exec<{ frame: string }>(query, ...bindings)) yield row.frame;
  }

  #frames(query: string, ...bindings: number[]): string[] {
    return [...this.#frameRows(query, ...bindings)];
  }

  #ensureSchema(): void {
    if (!this.#hasIds) {
      this.#sql.exec(MESSAGE_IDS_SCHEMA);
      this.#hasIds = true;
    }
    if (this.#hasSchema) return;
    this.#sql.exec(`
      CREATE TABLE IF NOT EXISTS messages (
        seq INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        user_id TEXT NOT NULL,
        msg_id TEXT,
        frame TEXT NOT NULL
      );
      CREATE TABLE IF NOT EXISTS room_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    `);
    this.#hasSchema = true;
  }
}

/** The leading frames that fit in `maxBytes`, and always the first; reads no further than that. */
function withinBytes(frames: Iterable<string>, maxBytes: number): string[] {
  const kept: string[] = [];
  let bytes = 0;
  for (const frame of frames) {
    bytes += byteLength(frame);
    if (bytes > maxBytes && kept.length > 0) break;
    kept.push(frame);
  }
  return kept;
}

/** Joins stored frame texts into a JSON array without parsing them again. */
export function framesToJsonArray(frames: readonly string[]): string {
  return `[${frames.join(",")}]`;
}
