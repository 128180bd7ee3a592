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
 */

import { describeError, log } from "../common/log";
import type { History, StoredMessage } from "./history";

/** A batch is flushed at once when it holds this many messages, or this many bytes of frames. */
export const BATCH_MAX_MESSAGES = 128;
export const BATCH_MAX_BYTES = 2 * 1024 * 1024;

export interface QueuedMessage {
  stored: StoredMessage;
  /** Runs after the batch is durable, in order: broadcast, ack. */
  onStored(): void;
  /** Runs when the batch could not be stored: nothing was sent. */
  onFailed(error: unknown): void;
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

  constructor(history: History, onCommitted?: (stored: StoredMessage[]) => void) {
    this.#history = history;
    this.#onCommitted = onCommitted;
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
    const messages = entries.flatMap((e) => (e.kind === "message" ? [e.message] : []));
    let failure: { error: unknown } | undefined;
    try {
      this.#history.appendBatch(messages.map((m) => m.stored));
    } catch (error) {
      failure = { error };
      log("error", "store_failed", { messages: messages.length, ...describeError(error) });
    }
    if (!failure && messages.length > 0) {
      try {
        this.#onCommitted?.(messages.map((m) => m.stored));
      } catch (error) {
        log("error", "committed_hook_failed", describeError(error));
      }
    }
    // Sent after the write, in the same turn: the runtime's output gate holds every one of them
    // until the write is durable, so no client sees a seq or an ack that could be lost.
    for (const entry of entries) {
      try {
        if (entry.kind === "after") entry.run();
        else if (failure) entry.message.onFailed(failure.error);
        else entry.message.onStored();
      } catch (error) {
        log("error", "deliver_failed", describeError(error));
      }
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
