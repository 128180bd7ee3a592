/**
 * Sends waiting for a connection (bounded, in order) and sends waiting for their `ack`. A room
 * message written on a connection that drops goes back to the front of the queue and is written
 * again, with the same `id`, once the client is back: the server acknowledges an `id` it already
 * stored with the first `seq` instead of storing it twice. A direct message cannot be resent that
 * way (it is not stored), so a drop rejects it with `connection_lost`.
 *
 * Writes are paced by a token bucket that mirrors the server's per-connection limit (20/s, burst 40
 * by default), so a full queue flushed after a reconnect is not refused; a room message the server
 * still refuses with `rate_limited` goes back to the front of the queue and is written again once the
 * bucket has refilled, rather than failing.
 */
import type { ErrorFrame } from "../protocol.js";
import { RoomClientError } from "./errors.js";

/** The result of an acknowledged send. */
export interface SendResult {
  /** The message id (generated unless given). */
  id: string;
  /** The room sequence number; absent for a direct message. */
  seq?: number;
}

export interface Pending {
  id: string;
  /** The serialized frame. */
  frame: string;
  isDirect: boolean;
  resolve: (result: SendResult) => void;
  reject: (error: RoomClientError) => void;
  timer?: ReturnType<typeof setTimeout>;
}

/** Writes a frame; false when the socket would not take it. */
export type Writer = (frame: string) => boolean;

/** The pace of writes: match the server's RATE_LIMIT_PER_SECOND and RATE_LIMIT_BURST. */
export interface Pace {
  perSecond: number;
  burst: number;
}

export class Outbox {
  readonly #queued: Pending[] = [];
  /** Written and waiting for an ack, in write order. */
  readonly #inFlight = new Map<string, Pending>();
  #writer: Writer | undefined;
  #tokens: number;
  #refilledAt = Date.now();
  #pumpTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    readonly maxQueue: number,
    readonly ackTimeoutMs: number,
    readonly pace: Pace = { perSecond: 20, burst: 40 },
  ) {
    this.#tokens = pace.burst;
  }

  /** Sends waiting for a connection. */
  get queued(): number {
    return this.#queued.length;
  }

  /** Sends written and waiting for their ack. */
  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Whether a send with this id is queued or in flight. */
  has(id: string): boolean {
    return this.#inFlight.has(id) || this.#queued.some((p) => p.id === id);
  }

  /** Adds a send; it is written now when a writer is set, else queued. False when the queue is full. */
  add(pending: Pending): boolean {
    if (this.#writer && this.#queued.length === 0 && this.#hasToken()) {
      if (this.#write(pending, this.#writer)) return true;
    }
    if (this.#queued.length >= this.maxQueue) return false;
    this.#queued.push(pending);
    this.#pump();
    return true;
  }

  /** Sets (or, with `undefined`, removes) the writer; setting it flushes the queue in order. */
  setWriter(writer: Writer | undefined): void {
    this.#writer = writer;
    this.#pump();
  }

  /** Writes queued sends in order, as fast as the pace allows; waits for the next token otherwise. */
  #pump(): void {
    clearTimeout(this.#pumpTimer);
    this.#pumpTimer = undefined;
    const writer = this.#writer;
    if (!writer) return;
    while (this.#queued.length > 0 && this.#writer === writer && this.#hasToken()) {
      const next = this.#queued[0] as Pending;
      if (!this.#write(next, writer)) return;
      this.#queued.shift();
    }
    if (this.#queued.length > 0 && this.#writer === writer) {
      const waitMs = Math.ceil(((1 - this.#tokens) / this.pace.perSecond) * 1000);
      this.#pumpTimer = setTimeout(() => this.#pump(), Math.max(1, waitMs));
    }
  }

  #hasToken(): boolean {
    const now = Date.now();
    this.#tokens = Math.min(this.pace.burst, this.#tokens + ((now - this.#refilledAt) * this.pace.perSecond) / 1000);
    this.#refilledAt = now;
    return this.#tokens >= 1;
  }

  /**
   * An `ack`, or the echo of our own message, arrived. After a drop the echo can come in the resume
   * replay while the send waits in the queue to be written again: then it need not be.
   */
  settle(id: string, seq: number | undefined): boolean {
    let pending = this.#inFlight.get(id);
    if (!pending) {
      const index = this.#queued.findIndex((p) => p.id === id);
      if (index !== -1) [pending] = this.#queued.splice(index, 1);
    }
    if (!pending) return false;
    this.#forget(pending);
    pending.resolve(seq === undefined ? { id } : { id, seq });
    return true;
  }

  /** An error frame carrying `id` arrived. */
  fail(id: string, frame: ErrorFrame): boolean {
    const pending = this.#inFlight.get(id);
    if (!pending) return false;
    this.#forget(pending);
    if (frame.code === "rate_limited" && !pending.isDirect) {
      // The server's bucket is empty (it counts frames we do not pace, or runs a lower limit):
      // write it again, first, once ours has refilled.
      this.#tokens = 0;
      this.#queued.unshift(pending);
      this.#pump();
      return true;
    }
    pending.reject(new RoomClientError(frame.code, frame.message, { frame }));
    return true;
  }

  /** The connection dropped: room messages go back to the front of the queue, direct ones fail. */
  requeueInFlight(): void {
    this.#writer = undefined;
    const again: Pending[] = [];
    for (const pending of [...this.#inFlight.values()]) {
      this.#forget(pending);
      if (pending.isDirect) {
        pending.reject(new RoomClientError("connection_lost", "the connection dropped before the ack"));
      } else {
        again.push(pending);
      }
    }
    this.#queued.unshift(...again);
  }

  /** Rejects the most recently written send (the one a 1009 close refers to). */
  rejectNewestInFlight(error: RoomClientError): void {
    const newest = [...this.#inFlight.values()].at(-1);
    if (!newest) return;
    this.#forget(newest);
    newest.reject(error);
  }

  /** Rejects everything, queued and in flight, and stops every ack timer. */
  rejectAll(error: RoomClientError): void {
    this.#writer = undefined;
    clearTimeout(this.#pumpTimer);
    this.#pumpTimer = undefined;
    const all = [...this.#inFlight.values(), ...this.#queued.splice(0)];
    for (const pending of all) {
      this.#forget(pending);
      pending.reject(error);
    }
  }

  #write(pending: Pending, writer: Writer): boolean {
    if (!writer(pending.frame)) return false;
    this.#tokens -= 1;
    this.#inFlight.set(pending.id, pending);
    pending.timer = setTimeout(() => {
      this.#forget(pending);
      pending.reject(new RoomClientError("ack_timeout", `no ack within ${this.ackTimeoutMs} ms`));
    }, this.ackTimeoutMs);
    return true;
  }

  #forget(pending: Pending): void {
    clearTimeout(pending.timer);
    pending.timer = undefined;
    this.#inFlight.delete(pending.id);
  }
}
