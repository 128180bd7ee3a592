/**
 * Idempotency keys a shard gives the id-less messages it forwards to its orderer (docs/scaling.md):
 * a random prefix per object's life and a counter. Longer than MAX_CLIENT_ID_LENGTH, so no client id
 * can ever be one; the orderer remembers it like an id (src/room/message-ids.ts) but never puts it in
 * the frame, so a batch retried after a lost answer stores each message once.
 */
export class ForwardKeys {
  // 5 + 36 + 1 + 36 + 1 characters: over MAX_CLIENT_ID_LENGTH (64) before the counter.
  readonly #prefix = `~fwd~${crypto.randomUUID()}~${crypto.randomUUID()}~`;
  #next = 0;

  next(): string {
    this.#next += 1;
    return `${this.#prefix}${this.#next}`;
  }
}
