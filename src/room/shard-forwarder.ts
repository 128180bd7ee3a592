/**
 * A shard's members' room messages on their way to the orderer (docs/scaling.md): batched, one
 * `submitBatch` in flight, retried with backoff until answered. Every item is idempotent (its client
 * id, or this shard's key for one without: src/room/forward-keys.ts), so a batch whose answer was lost
 * is sent again and stored once, and `store_failed` means what it means in one object: not stored.
 * Each message holds its place in its sender's answers (src/room/reply-order.ts) until it is answered.
 */
import { describeError, log } from "../common/log";
import type { ClientMessageFrame } from "../protocol";
import type { Connection } from "./connection";
import type { Connections } from "./connections";
import { ForwardKeys } from "./forward-keys";
import type { ReplyOrder } from "./reply-order";
import type { OrdererPort } from "./shard-role";
import type { Counts, ForwardItem, ForwardResult } from "./shard-rpc";

export const FORWARD_MAX_ITEMS = 128;
const RETRY_MS = 100;
const RETRY_MAX_MS = 2000;

type Release = (answer: () => void) => void;

/** A forwarded message's answer, sent in its sender's order once `seq` was delivered on the shard. */
export interface PendingAck {
  conn: Connection;
  /** Without one there is no ack, but the sender's next answers still wait for its message. */
  id: string | undefined;
  seq: number;
  release: Release;
}

interface Outgoing {
  conn: Connection;
  item: ForwardItem;
  release: Release;
}

export interface ForwarderParts {
  orderer: () => OrdererPort;
  connections: () => Connections;
  counts: () => Counts;
  order: ReplyOrder;
  /** Stored (or duplicates): to be acked once their seqs are delivered on the shard. */
  answered: (acks: PendingAck[]) => void;
}

export class ShardForwarder {
  readonly #k: number;
  readonly #p: ForwarderParts;
  readonly #keys = new ForwardKeys();
  #outbox: Outgoing[] = [];
  #isSending = false;
  #retryMs = RETRY_MS;
  /** Test hook: the answers to the next `loseAnswers` submitBatch calls are lost after the orderer stored them. */
  loseAnswers = 0;

  constructor(k: number, parts: ForwarderParts) {
    this.#k = k;
    this.#p = parts;
  }

  /** A member's room message, validated and rate-limited by the shard. */
  forward(conn: Connection, frame: ClientMessageFrame): void {
    const body = { text: frame.text, data: frame.data, id: frame.id };
    const item: ForwardItem = { user: conn.attachment.user, body };
    if (frame.id === undefined) item.key = this.#keys.next();
    this.#outbox.push({ conn, item, release: this.#p.order.hold(conn) });
    this.#pump();
  }

  #pump(): void {
    if (this.#isSending || this.#outbox.length === 0) return;
    this.#isSending = true;
    const batch = this.#outbox.splice(0, FORWARD_MAX_ITEMS);
    this.#p
      .orderer()
      .submitBatch(
        this.#k,
        batch.map((b) => b.item),
        this.#p.counts(),
      )
      .then((results) => {
        if (this.loseAnswers <= 0) return results;
        this.loseAnswers -= 1;
        throw new Error("submitBatch answer lost (test hook)");
      })
      .then(
        (results) => {
          this.#retryMs = RETRY_MS;
          this.#answered(batch, results);
          this.#isSending = false;
          this.#pump();
        },
        (error: unknown) => {
          // The orderer may have stored it: retried as is, every item is idempotent (its id or its
          // key), so nothing is stored twice and `store_failed` still means "not stored".
          const retryMs = this.#retryMs;
          log("warn", "shard_forward_failed", {
            shard: this.#k,
            items: batch.length,
            retryMs,
            ...describeError(error),
          });
          this.#outbox.unshift(...batch);
          setTimeout(() => {
            this.#isSending = false;
            this.#pump();
          }, retryMs);
          this.#retryMs = Math.min(RETRY_MAX_MS, retryMs * 2);
        },
      );
  }

  #answered(batch: Outgoing[], results: ForwardResult[]): void {
    const connections = this.#p.connections();
    const acks: PendingAck[] = [];
    batch.forEach(({ conn, item, release }, i) => {
      const result = results[i];
      const id = item.body.id;
      if (result === undefined || "failed" in result) {
        const text = "the message could not be stored; send it again";
        release(() => connections.sendError(conn, "store_failed", text, id));
      } else if (id !== undefined && result.outcome === "conflict") {
        const text = "this id was already used for a different message";
        release(() => connections.sendError(conn, "id_conflict", text, id));
      } else {
        acks.push({ conn, id, seq: result.seq, release });
      }
    });
    this.#p.answered(acks);
  }
}
