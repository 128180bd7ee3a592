/**
 * Message ids as idempotency keys: a bounded table of the room's recent (sender, id) → (seq, ts,
 * content hash), kept apart from the message log so that it holds at any HISTORY_LIMIT, 0 included.
 *
 * The window: an id is remembered while its message is among the room's newest
 * `max(HISTORY_LIMIT, MIN_ID_WINDOW)` messages (rows are trimmed every TRIM_EVERY messages, so a few
 * more may linger). The table is keyed by (sender, id) without a rowid: one row written per message
 * that carries an id, in the same synchronous turn (so the same implicit transaction) as the message.
 * A message without an id writes nothing here.
 */

/** An id is remembered for at least this many of the room's messages, whatever HISTORY_LIMIT says. */
export const MIN_ID_WINDOW = 1000;

export interface SeenId {
  seq: number;
  ts: number;
  /** `contentHash` of the first message's content. */
  contentHash: number;
}

/** How many of the newest messages an id is remembered for. */
export function idWindow(historyLimit: number): number {
  return Math.max(historyLimit, MIN_ID_WINDOW);
}

/**
 * A cheap 53-bit hash (cyrb53) of a message's content as stored: `text` and `data` as JSON. Not
 * cryptographic: a collision can only make the sender's own retry look like a repeat of the sender's
 * own message (the table is per sender), which harms nobody else. Key order inside `data` counts, as
 * it does in the stored frame.
 */
export function contentHash(text: string | undefined, data: unknown): number {
  const s = JSON.stringify({ text, data });
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

export const MESSAGE_IDS_SCHEMA = `
  CREATE TABLE IF NOT EXISTS message_ids (
    user_id TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    hash INTEGER NOT NULL,
    PRIMARY KEY (user_id, msg_id)
  ) WITHOUT ROWID;
`;

/** Reads and writes of the table; the schema is created by the log's (src/room/history.ts). */
export class MessageIds {
  constructor(readonly sql: SqlStorage) {}

  find(userId: string, messageId: string): SeenId | undefined {
    const row = this.sql
      .exec<{ seq: number; ts: number; hash: number }>(
        "SELECT seq, ts, hash FROM message_ids WHERE user_id = ? AND msg_id = ?",
        userId,
        messageId,
      )
      .toArray()[0];
    return row && { seq: row.seq, ts: row.ts, contentHash: row.hash };
  }

  /** Rooms from before this table kept the id in the log row: found there, hashed from its frame. */
  findInLog(userId: string, messageId: string): SeenId | undefined {
    const row = this.sql
      .exec<{ seq: number; ts: number; frame: string }>(
        "SELECT seq, ts, frame FROM messages WHERE user_id = ? AND msg_id = ?",
        userId,
        messageId,
      )
      .toArray()[0];
    if (!row) return undefined;
    const stored = JSON.parse(row.frame) as { text?: string; data?: unknown };
    return { seq: row.seq, ts: row.ts, contentHash: contentHash(stored.text, stored.data) };
  }

  remember(userId: string, messageId: string, seen: { seq: number; ts: number; contentHash: number }): void {
    this.sql.exec(
      "INSERT INTO message_ids (user_id, msg_id, seq, ts, hash) VALUES (?, ?, ?, ?, ?)",
      userId,
      messageId,
      seen.seq,
      seen.ts,
      seen.contentHash,
    );
  }

  /** Forgets ids of messages at or below `seq`. A scan of a table bounded by the window. */
  trim(seq: number): void {
    this.sql.exec("DELETE FROM message_ids WHERE seq <= ?", seq);
  }
}
