/**
 * The room's message log in the object's SQLite storage: the sequence counter and the newest
 * `limit` messages, each stored as the exact frame text that was broadcast (replayed as is).
 *
 * Writes made in one event are committed together, and the runtime's output gate holds every frame
 * sent in that event until the commit is durable: no client sees a `seq` that could be lost.
 */
export interface Replay {
  frames: string[];
  /** False when the log no longer holds every message after the asked seq. */
  recovered: boolean;
}

export class History {
  #hasSchema: boolean;
  #seq: number | undefined;

  constructor(private readonly sql: SqlStorage) {
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

  /** Stores the frame of message `seq` (which must be `latestSeq + 1`) and trims to `limit`. */
  append(seq: number, ts: number, frame: string, limit: number): void {
    if (seq !== this.latestSeq + 1) throw new Error(`seq ${seq} does not follow ${this.latestSeq}`);
    this.#ensureSchema();
    if (limit > 0) {
      this.sql.exec("INSERT INTO messages (seq, ts, frame) VALUES (?, ?, ?)", seq, ts, frame);
    }
    this.sql.exec(
      "INSERT INTO room_meta (key, value) VALUES ('seq', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      seq,
    );
    // A range, not one row, so that lowering HISTORY_LIMIT trims the surplus on the next message.
    this.sql.exec("DELETE FROM messages WHERE seq <= ?", seq - limit);
    this.#seq = seq;
  }

  /** The stored frames after `since`, in seq order. */
  after(since: number): Replay {
    const latest = this.latestSeq;
    // A client ahead of the room saw messages this log never had (the room was reset): a gap.
    if (since >= latest) return { frames: [], recovered: since === latest };
    const frames = this.sql
      .exec<{ frame: string }>("SELECT frame FROM messages WHERE seq > ? ORDER BY seq", since)
      .toArray()
      .map((r) => r.frame);
    return { frames, recovered: frames.length === latest - since };
  }

  #ensureSchema(): void {
    if (this.#hasSchema) return;
    this.sql.exec(`
      CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, frame TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS room_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    `);
    this.#hasSchema = true;
  }
}
