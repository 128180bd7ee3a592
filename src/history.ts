/**
 * The room's message log in the object's SQLite storage: the sequence counter and the newest
 * `limit` messages, each stored as the exact frame text that was broadcast (replayed as is).
 *
 * The schema is created on the first write, so reading a room that never existed writes nothing.
 * Writes made in one event are committed together, and the runtime's output gate holds every frame
 * sent in that event until the commit is durable: no client sees a `seq` that could be lost.
 */
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

export type PageQuery = { since: number; limit: number } | { before?: number; limit: number };

export interface StoredMessage {
  seq: number;
  ts: number;
  userId: string;
  /** The sender's message id: an idempotency key per user while the message is in the log. */
  messageId: string | undefined;
  frame: string;
}

/**
 * A resuming connection gets at most about this many bytes of replay (the newest messages), so a
 * `?since=0` into a full history of large messages cannot pin tens of MiB per socket. Past it,
 * `recovered` is false and the client pages the rest with `history` frames or the HTTP API.
 */
export const REPLAY_MAX_BYTES = 4 * 1024 * 1024;

export class History {
  #hasSchema: boolean;
  #seq: number | undefined;
  private readonly sql: SqlStorage;

  constructor(private readonly storage: DurableObjectStorage) {
    const sql = storage.sql;
    this.sql = sql;
    this.#hasSchema =
      sql.exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'room_meta'").toArray().length > 0;
  }

  /** The latest seq handed out; 0 for a room that never had a message. */
  get latestSeq(): number {
    if (this.#seq === undefined) {
      const row = this.#hasSchema
        ? this.sql.exec<{ value: number }>("SELECT value FROM room_meta WHERE key = 'seq'").toArray()[0]
        : undefined;
      this.#seq = row?.value ?? 0;
    }
    return this.#seq;
  }

  /** The stored message `userId` sent with `messageId`, if it is still in the log. */
  findById(userId: string, messageId: string): { seq: number; ts: number } | undefined {
    if (!this.#hasSchema) return undefined;
    return this.sql
      .exec<{ seq: number; ts: number }>(
        "SELECT seq, ts FROM messages WHERE user_id = ? AND msg_id = ?",
        userId,
        messageId,
      )
      .toArray()[0];
  }

  /** Stores message `seq` (which must be `latestSeq + 1`) and trims the log to `limit`. */
  append(message: StoredMessage, limit: number): void {
    const { seq } = message;
    if (seq !== this.latestSeq + 1) throw new Error(`seq ${seq} does not follow ${this.latestSeq}`);
    // All or nothing: a half-applied append would leave the counter and the log disagreeing.
    this.storage.transactionSync(() => this.#write(message, limit));
    this.#seq = seq;
  }

  #write(message: StoredMessage, limit: number): void {
    const { seq } = message;
    this.#ensureSchema();
    if (limit > 0) {
      this.sql.exec(
        "INSERT INTO messages (seq, ts, user_id, msg_id, frame) VALUES (?, ?, ?, ?, ?)",
        seq,
        message.ts,
        message.userId,
        message.messageId ?? null,
        message.frame,
      );
    }
    this.sql.exec(
      "INSERT INTO room_meta (key, value) VALUES ('seq', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      seq,
    );
    // A range, not one row, so that lowering HISTORY_LIMIT trims the surplus on the next message.
    this.sql.exec("DELETE FROM messages WHERE seq <= ?", seq - limit);
  }

  /**
   * The stored frames after `since`, in seq order, for a resuming connection: all of them, or the
   * newest that fit in `maxBytes` (so any gap is at the start, where `history` paging can fill it).
   */
  after(since: number, maxBytes = REPLAY_MAX_BYTES): Replay {
    const latest = this.latestSeq;
    // A client ahead of the room saw messages this log never had (the room was reset): a gap.
    if (since >= latest) return { frames: [], recovered: since === latest };
    const newestFirst: string[] = [];
    let bytes = 0;
    for (const row of this.sql.exec<{ frame: string }>(
      "SELECT frame FROM messages WHERE seq > ? ORDER BY seq DESC",
      since,
    )) {
      bytes += row.frame.length;
      if (bytes > maxBytes) break;
      newestFirst.push(row.frame);
    }
    const frames = newestFirst.reverse();
    return { frames, recovered: frames.length === latest - since };
  }

  /**
   * One page of stored frames in seq order: the first `limit` after `since`, or the last `limit`
   * before `before` (the newest page when neither is given). `hasMore` says whether the log holds
   * more in the direction of paging.
   */
  page(query: PageQuery): Page {
    if (!this.#hasSchema) return { frames: [], hasMore: false };
    const { limit } = query;
    if ("since" in query) {
      const frames = this.#frames(
        "SELECT frame FROM messages WHERE seq > ? ORDER BY seq LIMIT ?",
        query.since,
        limit + 1,
      );
      return { frames: frames.slice(0, limit), hasMore: frames.length > limit };
    }
    const before = query.before ?? Number.MAX_SAFE_INTEGER;
    const frames = this.#frames(
      "SELECT frame FROM messages WHERE seq < ? ORDER BY seq DESC LIMIT ?",
      before,
      limit + 1,
    );
    return { frames: frames.slice(0, limit).reverse(), hasMore: frames.length > limit };
  }

  #frames(query: string, ...bindings: number[]): string[] {
    if (!this.#hasSchema) return [];
    return this.sql
      .exec<{ frame: string }>(query, ...bindings)
      .toArray()
      .map((r) => r.frame);
  }

  #ensureSchema(): void {
    if (this.#hasSchema) return;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS messages (
        seq INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        user_id TEXT NOT NULL,
        msg_id TEXT,
        frame TEXT NOT NULL
      );
      CREATE UNIQUE INDEX IF NOT EXISTS messages_by_sender_id ON messages (user_id, msg_id) WHERE msg_id IS NOT NULL;
      CREATE TABLE IF NOT EXISTS room_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    `);
    this.#hasSchema = true;
  }
}

/** Joins stored frame texts into a JSON array without parsing them again. */
export function framesToJsonArray(frames: readonly string[]): string {
  return `[${frames.join(",")}]`;
}
