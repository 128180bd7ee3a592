/**
 * Each connection's answers in the order of its frames, where another object answers some of them
 * (docs/scaling.md). In one object the commit queue gives this order (`Messages.reply`); a shard's
 * room messages go to the orderer instead, and on the orderer of a sharded room a DM or a signal to
 * a user elsewhere is answered when that user's object answers. So each connection there has its own
 * chain: an answer not known yet (an ack, a history page, `unknown_recipient`) holds a place in it,
 * and whatever the connection is answered later waits behind that place. Chains are per connection:
 * one member waiting on another object holds up nobody else. Nothing waits, and no promise is made,
 * for a connection that is owed nothing.
 */
import { describeError, log } from "../common/log";
import type { Connection } from "./connection";

/** Sends an answer; a promise holds the connection's later answers until it settles. */
export type Step = () => void | Promise<void>;

interface Chain {
  tail: Promise<void>;
  count: number;
}

function run(step: Step): Promise<void> | undefined {
  try {
    const result = step();
    return result instanceof Promise ? result.catch(failed) : undefined;
  } catch (error) {
    failed(error);
    return undefined;
  }
}

function failed(error: unknown): void {
  log("error", "reply_failed", describeError(error));
}

export class ReplyOrder {
  readonly #chains = new Map<Connection, Chain>();

  /** Runs `step` once everything owed to `conn` before it went out: at once when nothing is. */
  after(conn: Connection, step: Step): void {
    const chain = this.#chains.get(conn);
    if (chain !== undefined) {
      this.#append(conn, chain, () => run(step));
      return;
    }
    const waiting = run(step);
    if (waiting !== undefined) this.#append(conn, { tail: Promise.resolve(), count: 0 }, () => waiting);
  }

  /** A place in `conn`'s order for an answer not known yet: the returned function sends it there. */
  hold(conn: Connection): (answer: () => void) => void {
    let release: (answer: () => void) => void = () => undefined;
    const answered = new Promise<() => void>((resolve) => {
      release = resolve;
    });
    this.after(conn, () => answered.then((answer) => run(answer)));
    return release;
  }

  /** Connections with answers still owed (for tests). */
  get size(): number {
    return this.#chains.size;
  }

  #append(conn: Connection, chain: Chain, next: () => Promise<void> | undefined): void {
    chain.count += 1;
    this.#chains.set(conn, chain);
    chain.tail = chain.tail.then(next).then(() => {
      chain.count -= 1;
      if (chain.count === 0 && this.#chains.get(conn) === chain) this.#chains.delete(conn);
    });
  }
}
