/**
 * Presence frames on their way to a room's members (src/room/presence-feed.ts): joins, leaves,
 * state updates and `roster` frames, in one queue so that they keep their order.
 *
 * Announcements made close together (a connect storm) go out together: each connection gets, in
 * order, the ones made while it was here, in one socket write when its client takes frames in
 * batches. A lone announcement goes out on the next macrotask; one within PRESENCE_UPDATE_INTERVAL_MS
 * of the last flush waits for that interval, like presence states. One at a time, each would be a
 * write to every member: a storm of n connects was n² writes.
 */
import { describeError, log } from "../common/log";
import { PRESENCE_UPDATE_INTERVAL_MS } from "../protocol";
import type { Connection } from "./connection";
import type { Connections } from "./connections";

/** An announcement waiting to go out: to the connections accepted up to `mark`, but `except`. */
interface Pending {
  frame: string;
  mark: number;
  except: WebSocket | undefined;
}

export class PresenceQueue {
  readonly #connections: () => Connections;
  #pending: Pending[] = [];
  /** When the last announcements went out (ms). */
  #flushedAt = 0;

  constructor(connections: () => Connections) {
    this.#connections = connections;
  }

  /** Queues `frame` for every connection accepted so far but `except`. */
  push(frame: string, except?: WebSocket): void {
    // A connection accepted later was welcomed with the presence as it is now: not for it.
    const mark = this.#connections().accepted;
    if (this.#pending.push({ frame, mark, except }) === 1) {
      const wait = Math.max(0, this.#flushedAt + PRESENCE_UPDATE_INTERVAL_MS - Date.now());
      setTimeout(() => this.#flush(), wait);
    }
  }

  /** Drops what is queued (moot: the room switched to counts only). */
  clear(): void {
    this.#pending = [];
  }

  /** Sends what is queued now, ahead of a frame from a member (`Connections.beforeOthers`). */
  flushPending(): void {
    if (this.#pending.length > 0) this.#flush();
  }

  #flush(): void {
    if (this.#pending.length === 0) return; // sent early (flushPending)
    this.#flushedAt = Date.now();
    const pending = this.#pending;
    this.#pending = [];
    try {
      // Most connections get every one: the same list, so its batch frames are built once.
      const every = pending.map((p) => p.frame);
      this.#connections().broadcastEach((conn: Connection) => {
        const order = conn.order ?? 0;
        const mine = pending.filter((p) => order <= p.mark && conn.ws !== p.except);
        return mine.length === pending.length ? every : mine.map((p) => p.frame);
      });
    } catch (error) {
      log("error", "presence_failed", describeError(error));
    }
  }
}
