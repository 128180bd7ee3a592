/**
 * Group commit: room messages that arrive close together are stored in one transaction (one
 * durable commit), then broadcast and acknowledged in `seq` order. Storing each on its own costs a
 * commit per message, which is what bounded a busy room (docs: bench/README.md).
 *
 * A message is queued with its `seq` already given (the next after the log and the queue), and
 * the queue is flushed on the next macrotask, so that the messages of other events arriving
 * meanwhile join the batch, or at once when the batch is full. Everything that must not overtake a
 * queued message (a direct message, a retry's ack) is queued too, and runs in order at the flush.
 * If the batch fails to store, nothing of it is broadcast: each sender is told, with its id, and
 * the seqs it had been given are given again (nobody saw them).
 *
 * The queue also broadcasts the stored frames (through its `FanOut`): a run of consecutive messages
 * (one not cut by anything else queued) goes to the connections that take batch frames as few
 * frames (src/room/batch-frames.ts) before the run's first ack, and to the others one by one, each
 * followed by its ack, as ever.
 */

import { describeError, log } from "../common/log";
import type { History, StoredMessage } from "./history";

/** A batch is flushed at once when it holds this many messages, or this many bytes of frames. */
export const BATCH_MAX_MESSAGES = 128;
export const BATCH_MAX_BYTES = 2 * 1024 * 1024;

export interface QueuedMessage {
  stored: StoredMessage;
  /** Runs after the batch is durable and the message was broadcast, in order (the ack). */
  onStored(): void;
  /** Runs when the batch could not be stored: nothing was sent. */
  onFailed(error: unknown): void;
}

/** Where stored frames go (src/room/connections.ts). */
export interface FanOut {
  /**
   * A run of 2+ frames, to the connections that take batch frames; whether any does (then `one`
   * is told to skip them).
   */
  run(frames: string[]): boolean;
  /** One frame, to every connection, or only to those that take no batch frames. */
  one(frame: string, isPlainOnly: boolean): void;
}

type Entry = { kind: "message"; message: QueuedMessage } | { kind: "after"; run(): void };

export class CommitQueue {
  readonly #history: History;
  #entries: Entry[] = [];
  #messages = 0;
  #bytes = 0;
  #isScheduled = false;
  /** (sender, id) of the queued messages: a retry of one is a duplicate of it. */
  readonly #ids = new Map<string, QueuedMessage>();
  /** Told of each batch once it is durable (webhook events, src/room/room-events.ts). */
  readonly #onCommitted: ((stored: StoredMessage[]) => void) | undefined;
  readonly #fanOut: FanOut | undefined;

  constructor(history: History, onCommitted?: (stored: StoredMessage[]) => void, fanOut?: FanOut) {
    this.#history = history;
    this.#onCommitted = onCommitted;
    this.#fanOut = fanOut;
  }

  /** The seq the next queued message gets. */
  get nextSeq(): number {
    return this.#history.latestSeq + this.#messages + 1;
  }

  /** A queued message that `userId` sent with `messageId`, if any. */
  findQueued(userId: string, messageId: string): QueuedMessage | undefined {
    return this.#ids.get(`${userId}\u0000${messageId}`);
  }

  /** Queues a message whose `stored.seq` is `nextSeq`. */
  add(message: QueuedMessage): void {
    const { stored } = message;
    if (stored.seq !== this.nextSeq) throw new Error(`seq ${stored.seq} is not the next (${this.nextSeq})`);
    this.#entries.push({ kind: "message", message });
    this.#messages += 1;
    this.#bytes += stored.frame.length;
    if (stored.messageId !== undefined) this.#ids.set(`${stored.userId}\u0000${stored.messageId}`, message);
    if (this.#messages >= BATCH_MAX_MESSAGES || this.#bytes >= BATCH_MAX_BYTES) this.flush();
    else this.#schedule();
  }

  /** Runs `run` after every message queued so far is stored (at once when none is queued). */
  after(run: () => void): void {
    if (this.#entries.length === 0) {
      run();
      return;
    }
    this.#entries.push({ kind: "after", run });
  }

  /** Stores the batch, then runs what waited on it, in order. */
  flush(): void {
    if (this.#entries.length === 0) return;
    const entries = this.#entries;
    this.#entries = [];
    this.#messages = 0;
    this.#bytes = 0;
    this.#ids.clear();
    const stored = entries.flatMap((e) => (e.kind === "message" ? [e.message.stored] : []));
    let failure: { error: unknown } | undefined;
    try {
      this.#history.appendBatch(stored);
    } catch (error) {
      failure = { error };
      log("error", "store_failed", { messages: stored.length, ...describeError(error) });
    }
    if (!failure && stored.length > 0) {
      try {
        this.#onCommitted?.(stored);
      } catch (error) {
        log("error", "committed_hook_failed", describeError(error));
      }
    }
    // Sent after the write, in the same turn: the runtime's output gate holds every one of them
    // until the write is durable, so no client sees a seq or an ack that could be lost.
    for (let i = 0; i < entries.length; ) {
      const entry = entries[i] as Entry;
      if (entry.kind === "after" || failure) {
        this.#settle(() => (entry.kind === "after" ? entry.run() : entry.message.onFailed(failure?.error)));
        i++;
        continue;
      }
      // A run of messages ends at whatever else was queued, which must not be overtaken.
      let end = i + 1;
      while (entries[end]?.kind === "message") end++;
      const run = entries.slice(i, end).map((e) => (e as { message: QueuedMessage }).message);
      let isPlainOnly = false;
      if (run.length > 1)
        this.#settle(() => (isPlainOnly = this.#fanOut?.run(run.map((m) => m.stored.frame)) ?? false));
      for (const message of run) {
        this.#settle(() => {
          this.#fanOut?.one(message.stored.frame, isPlainOnly);
          message.onStored();
        });
      }
      i = end;
    }
  }

  /** Runs one delivery step; a failure is logged and the others still run. */
  #settle(step: () => void): void {
    try {
      step();
    } catch (error) {
      log("error", "deliver_failed", describeError(error));
    }
  }

  #schedule(): void {
    if (this.#isScheduled) return;
    this.#isScheduled = true;
    // A macrotask, not a microtask: the frames of other events that arrive meanwhile join the batch.
    setTimeout(() => {
      this.#isScheduled = false;
      if (this.#entries.length > 0) this.flush();
    }, 0);
  }
}
