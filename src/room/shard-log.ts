/**
 * A shard's view of the room's log (docs/scaling.md): its last delivered seq (stored, so a shard
 * that hibernates or resets continues where it was) and the most recent frames it delivered, which
 * resume replays read. Older frames come from the orderer and extend the buffer backwards.
 *
 * The last seq is written at most once per SAVE_EVERY_MS while deliveries flow, not once per
 * delivery: a row write each was most of a sharded room's cost per message, and each held the
 * delivery's answer for a commit. It is still written before the shard can lose its memory with its
 * sockets kept (hibernation): a pending timer keeps an object from hibernating. An object that
 * resets loses its sockets too, and one that comes back behind simply catches up from the orderer's
 * history, as one whose clients saw more elsewhere does.
 */

import * as v from "valibot";
import { byteLength } from "./bytes";
import type { Page, ReadLog, Replay } from "./history";
import { type ShardMap, ShardMapSchema } from "./shard-map";

export const RECENT_MAX_FRAMES = 2048;
export const RECENT_MAX_BYTES = 4 * 1024 * 1024;

/** The stored last seq lags the delivered one by at most this long. */
export const SAVE_EVERY_MS = 1000;

const SCHEMA = "CREATE TABLE IF NOT EXISTS shard_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)";

export class ShardLog implements ReadLog {
  readonly #sql: SqlStorage;
  #last: number | undefined;
  #map: ShardMap | undefined | null = null;
  /** Frames `recentFrom`, `recentFrom + 1`, …, `last`. */
  #recent: string[] = [];
  #recentFrom = 1;
  #bytes = 0;

  /** Created on the first write: an orderer that never grew writes nothing. */
  #hasTable: boolean;
  /** When the last seq was last written (ms), and the write waiting for its turn. */
  #savedAt = 0;
  #saveTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(sql: SqlStorage) {
    this.#sql = sql;
    this.#hasTable = sql.exec("SELECT name FROM sqlite_master WHERE name = 'shard_state'").toArray().length > 0;
  }

  /** The map the orderer last gave this shard; `undefined` before it was ever attached. */
  get map(): ShardMap | undefined {
    if (this.#map === null) {
      const raw = this.#read("map");
      const parsed = raw === undefined ? undefined : v.safeParse(ShardMapSchema, JSON.parse(raw));
      this.#map = parsed?.success ? parsed.output : undefined;
    }
    return this.#map;
  }

  setMap(map: ShardMap): void {
    this.#map = map;
    this.#write("map", JSON.stringify(map));
  }

  /** The last seq delivered to this shard's sockets. */
  get latestSeq(): number {
    if (this.#last === undefined) {
      this.#last = Number(this.#read("last") ?? "0");
      this.#recentFrom = this.#last + 1;
    }
    return this.#last;
  }

  /** Starts (again) after `seq`: a shard attached now, or one whose gap history cannot fill. */
  restart(seq: number): void {
    this.#last = seq;
    this.#recent = [];
    this.#bytes = 0;
    this.#recentFrom = seq + 1;
    this.#write("last", String(seq));
  }

  /** Frame `seq` = latestSeq + 1 was delivered. */
  push(frame: string): void {
    const seq = this.latestSeq + 1;
    this.#last = seq;
    this.#recent.push(frame);
    this.#bytes += frame.length;
    while (this.#recent.length > RECENT_MAX_FRAMES || (this.#bytes > RECENT_MAX_BYTES && this.#recent.length > 1)) {
      this.#bytes -= (this.#recent.shift() as string).length;
      this.#recentFrom += 1;
    }
  }

  /** Stores the last delivered seq: now if it was not written within SAVE_EVERY_MS, else then. */
  save(): void {
    if (this.#saveTimer !== undefined) return;
    const wait = this.#savedAt + SAVE_EVERY_MS - Date.now();
    if (wait <= 0) {
      this.#saveNow();
      return;
    }
    this.#saveTimer = setTimeout(() => {
      this.#saveTimer = undefined;
      this.#saveNow();
    }, wait);
  }

  #saveNow(): void {
    this.#savedAt = Date.now();
    this.#write("last", String(this.latestSeq));
  }

  /** The first seq the buffer holds (latestSeq + 1 when it is empty). */
  get recentFrom(): number {
    this.latestSeq;
    return this.#recentFrom;
  }

  /** Older frames read from the orderer: `frames` are seq `from`…, ending right before the buffer. */
  prepend(from: number, frames: readonly string[]): void {
    if (from + frames.length !== this.recentFrom) return;
    let kept = [...frames];
    let bytes = kept.reduce((n, f) => n + f.length, 0);
    while (kept.length > 0 && this.#bytes + bytes > RECENT_MAX_BYTES) {
      bytes -= (kept[0] as string).length;
      kept = kept.slice(1);
    }
    this.#recent = [...kept, ...this.#recent];
    this.#bytes += bytes;
    this.#recentFrom -= kept.length;
  }

  /** Like History.after, from the buffer: the newest frames after `since` within `maxBytes`. */
  after(since: number, maxBytes: number): Replay {
    const last = this.latestSeq;
    if (since >= last) return { frames: [], recovered: since === last };
    const start = Math.max(since + 1, this.#recentFrom) - this.#recentFrom;
    const kept: string[] = [];
    let bytes = 0;
    for (let i = this.#recent.length - 1; i >= start; i--) {
      const frame = this.#recent[i] as string;
      bytes += byteLength(frame);
      if (bytes > maxBytes && kept.length > 0) break;
      kept.push(frame);
    }
    kept.reverse();
    return { frames: kept, recovered: kept.length === last - since };
  }

  /** Pages are read from the orderer (src/room/shard-role.ts); the buffer never answers one. */
  page(): Page {
    return { frames: [], hasMore: false };
  }

  #read(key: string): string | undefined {
    if (!this.#hasTable) return undefined;
    return this.#sql.exec<{ value: string }>("SELECT value FROM shard_state WHERE key = ?", key).toArray()[0]?.value;
  }

  #write(key: string, value: string): void {
    if (!this.#hasTable) {
      this.#sql.exec(SCHEMA);
      this.#hasTable = true;
    }
    this.#sql.exec(
      "INSERT INTO shard_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      key,
      value,
    );
  }
}
