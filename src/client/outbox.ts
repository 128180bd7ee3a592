/**
 * Sends waiting for a connection (bounded, in order) and sends waiting for their `ack`. A room
 * message written on a connection that drops goes back to the front of the queue and is written
 * again, with the same `id`, once the client is back: the server acknowledges an `id` it already
 * stored with the first `seq` instead of storing it twice. A direct message cannot be resent that
 * way (it is not stored), so a drop rejects it with `connection_lost`.
 *
 * A missing `ack` does not fail a send: it means the connection is stalled, so the outbox asks the
 * client to drop it (`onStall`) and the send is written again on the next one. A send fails on its
 * own only when its deadline (`sendDeadlineMs`, counted from `send()`) passes: `send_timeout`, with
 * `wasWritten` saying whether it may have reached the server.
 *
 * Writes are paced by a token bucket that mirrors the server's per-connection limit (20/s, burst 40
 * by default), so a full queue flushed after a reconnect is not refused; a room message the server
 * still refuses with `rate_limited` goes back to the front of the queue and is written again once the
 * bucket has refilled, rather than failing.
 */
import type { ErrorFrame } from "../protocol/index.js";
import { RoomClientError, type SendErrorCode } from "./errors.js";

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
  /** Written to a socket at least once: the server may have stored it. */
  wasWritten?: boolean;
  timer?: ReturnType<typeof setTimeout>;
  deadline?: ReturnType<typeof setTimeout>;
}

/** Writes a frame; false when the socket would not take it. */
export type Writer = (frame: string) => boolean;

/** The pace of writes: match the server's RATE_LIMIT_PER_SECOND and RATE_LIMIT_BURST. */
export interface Pace {
  perSecond: number;
  burst: number;
}

export interface OutboxOptions {
  maxQueue: number;
  /** How long a written send may wait for its ack before the connection counts as stalled. */
  ackTimeoutMs: number;
  /** How long a send may wait, from `send()`, before it is rejected with `send_timeout`. */
  sendDeadlineMs: number;
  pace?: Pace;
  /** A written send got no ack in time: the connection should be dropped (its sends are requeued). */
  onStall?: () => void;
}

export class Outbox {
  readonly maxQueue: number;
  readonly ackTimeoutMs: number;
  readonly sendDeadlineMs: number;
  readonly pace: Pace;
  readonly #onStall: () => void;
  readonly #queued: Pending[] = [];
  /** Written and waiting for an ack, in write order. */
  readonly #inFlight = new Map<string, Pending>();
  /** Sends settled by their echo whose ack is still to come on this connection: id → seq. */
  readonly #ackDue = new Map<string, number | undefined>();
  #writer: Writer | undefined;
  #tokens: number;
  #refilledAt = Date.now();
  #pumpTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(options: OutboxOptions) {
    this.maxQueue = options.maxQueue;
    this.ackTimeoutMs = options.ackTimeoutMs;
    this.sendDeadlineMs = options.sendDeadlineMs;
    this.pace = options.pace ?? { perSecond: 20, burst: 40 };
    this.#onStall = options.onStall ?? (() => {});
    this.#tokens = this.pace.burst;
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
    if (!(this.#writer && this.#queued.length === 0 && this.#hasToken() && this.#write(pending, this.#writer))) {
      if (this.#queued.length >= this.maxQueue) return false;
      this.#queued.push(pending);
      this.#pump();
    }
    pending.deadline = setTimeout(() => this.#expire(pending), this.sendDeadlineMs);
    return true;
  }

  /** The send's deadline passed without an ack: it is given up, and never written again. */
  #expire(pending: Pending): void {
    const index = this.#queued.indexOf(pending);
    if (index !== -1) this.#queued.splice(index, 1);
    this.#forget(pending);
    const maybe = pending.wasWritten ? "it was written and may have been stored" : "it was never written";
    pending.reject(
      new RoomClientError("send_timeout", `no ack within ${this.sendDeadlineMs} ms (${maybe})`, {
        id: pending.id,
        wasWritten: pending.wasWritten === true,
      }),
    );
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
   * An `ack`, or the echo of our own message (`isEcho`), arrived. After a drop the echo can come in
   * the resume replay while the send waits in the queue to be written again: then it need not be.
   */
  settle(id: string, seq: number | undefined, isEcho = false): boolean {
    if (!isEcho && this.#ackDue.get(id) === seq && this.#ackDue.delete(id)) {
      // The ack of a send its echo settled already: not the answer to a newer send with that id.
      return false;
    }
    let pending = this.#inFlight.get(id);
    // The echo comes before the ack on the same connection: that ack is still due.
    if (pending && isEcho) this.#ackDue.set(id, seq);
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
    if (frame.code === "rate_limited" && !pending.isDirect) {
      this.#park(pending);
      // The server's bucket is empty (it counts frames we do not pace, or runs a lower limit):
      // write it again, first, once ours has refilled.
      this.#tokens = 0;
      this.#queued.unshift(pending);
      this.#pump();
      return true;
    }
    this.#forget(pending);
    pending.reject(new RoomClientError(frame.code, frame.message, { frame, id, wasWritten: true }));
    return true;
  }

  /** The connection dropped: room messages go back to the front of the queue, direct ones fail. */
  requeueInFlight(): void {
    this.#writer = undefined;
    this.#ackDue.clear(); // acks of the old connection never come
    const again: Pending[] = [];
    for (const pending of [...this.#inFlight.values()]) {
      if (pending.isDirect) {
        this.#forget(pending);
        pending.reject(
          new RoomClientError("connection_lost", "the connection dropped before the ack", {
            id: pending.id,
            wasWritten: true,
          }),
        );
      } else {
        this.#park(pending);
        again.push(pending);
      }
    }
    this.#queued.unshift(...again);
  }

  /** Rejects the most recently written send (the one a 1009 close refers to). */
  rejectNewestInFlight(code: SendErrorCode, message: string): void {
    const newest = [...this.#inFlight.values()].at(-1);
    if (!newest) return;
    this.#forget(newest);
    newest.reject(new RoomClientError(code, message, { id: newest.id, wasWritten: true }));
  }

  /** Rejects everything, queued and in flight (each with its id), and stops every timer. */
  rejectAll(code: SendErrorCode, message: string): void {
    this.#writer = undefined;
    this.#ackDue.clear();
    clearTimeout(this.#pumpTimer);
    this.#pumpTimer = undefined;
    const all = [...this.#inFlight.values(), ...this.#queued.splice(0)];
    for (const pending of all) {
      this.#forget(pending);
      const wasWritten = pending.wasWritten === true;
      pending.reject(new RoomClientError(code, message, { id: pending.id, wasWritten }));
    }
  }

  #write(pending: Pending, writer: Writer): boolean {
    if (!writer(pending.frame)) return false;
    this.#tokens -= 1;
    pending.wasWritten = true;
    this.#inFlight.set(pending.id, pending);
    clearTimeout(pending.timer);
    // No ack in time: the link is stalled (half-open), not the message bad. The client drops the
    // connection, which puts this send back in the queue for the next one.
    pending.timer = setTimeout(() => this.#onStall(), this.ackTimeoutMs);
    return true;
  }

  /** Out of the in-flight set, ack timer stopped. The deadline stays until the send settles. */
  #park(pending: Pending): void {
    clearTimeout(pending.timer);
    pending.timer = undefined;
    this.#inFlight.delete(pending.id);
  }

  /** Done with: no timer of it runs any more. */
  #forget(pending: Pending): void {
    this.#park(pending);
    clearTimeout(pending.deadline);
    pending.deadline = undefined;
  }
}
