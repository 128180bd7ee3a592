/**
 * Ephemeral signals (typing indicators, cursors): relayed at once to the room's other connections,
 * or to one user's, never stored, no seq, not replayed on resume. Each user has its own signal bucket
 * in the room, apart from the message buckets, so cursor traffic can neither starve messages nor be
 * starved by them.
 */

import type { Config } from "../common/config";
import type { ClientSignalFrame, FrameErrorCode, SignalFrame } from "../protocol";
import { type Connection, tagForUser } from "./connection";
import type { Connections } from "./connections";
import { type RateLimits, take } from "./rate-limit";
import type { RelayItem } from "./relay";
import type { Step } from "./reply-order";

/**
 * How the room answers a connection: `answer` runs in its place among the connection's answers, after
 * its queued messages (src/room/messages.ts `reply`); one that returns a promise holds the later ones.
 */
export type Reply = (conn: Connection, answer: Step) => void;

/** An error frame to `conn`, in its place among the connection's answers. */
export type ErrorReply = (conn: Connection, code: FrameErrorCode, text: string) => void;

export function errorReply(connections: () => Connections, reply: Reply): ErrorReply {
  return (conn, code, text) => reply(conn, () => connections().sendError(conn, code, text));
}

export class Signals {
  readonly #connections: () => Connections;
  readonly #limits: RateLimits;
  readonly #reply: Reply;
  readonly #error: ErrorReply;
  /** In a sharded room: a signal to everyone goes on to the room's other objects (src/room/relay.ts). */
  relay: ((item: RelayItem) => void) | undefined;
  /** In a sharded room: a signal to a user with no connection here goes to that user's object. */
  relayDirect: ((to: string, text: string) => Promise<number> | undefined) | undefined;

  constructor(
    connections: () => Connections,
    config: Pick<Config, "signalRatePerSecond" | "signalRateBurst">,
    reply: Reply,
  ) {
    this.#connections = connections;
    this.#reply = reply;
    this.#error = errorReply(connections, reply);
    // Strikes never close for signals: a dropped one costs the room a parse of at most
    // SIGNAL_MAX_BYTES, and a cursor sent faster than allowed is a common mistake, not an attack.
    this.#limits = {
      perSecond: config.signalRatePerSecond,
      burst: config.signalRateBurst,
      maxStrikes: Number.POSITIVE_INFINITY,
    };
  }

  /**
   * Takes a token from the user's signal bucket; false when it is empty. Lossy by nature: the first
   * drop of a run says so, the rest of the run is silent, so a client sending too fast is told
   * without getting an error frame back per signal.
   */
  take(conn: Connection, now: number): boolean {
    if (take(conn.owner.signals, now, this.#limits) === "ok") return true;
    if (conn.owner.signals.strikes === 1) {
      this.#error(conn, "rate_limited", "too many signals; some were dropped (SIGNAL_RATE_PER_SECOND)");
    }
    return false;
  }

  /**
   * A `signal` frame. Relayed now, not queued behind the sender's messages waiting for their commit
   * (`reply`): nothing is stored, so there is nothing to wait for, and a cursor that waited for a
   * storage write would lag. Signals are therefore not ordered with messages.
   */
  onSignal(conn: Connection, frame: ClientSignalFrame, now: number): void {
    const { role, user } = conn.attachment;
    if (role === "readonly") {
      this.#error(conn, "forbidden", "this connection is read-only");
      return;
    }
    if (!this.take(conn, now)) return;
    const connections = this.#connections();
    const out: SignalFrame = { type: "signal", from: user, data: frame.data };
    if (frame.to === undefined) {
      const text = JSON.stringify(out);
      connections.broadcast(text, conn.ws);
      this.relay?.({ frame: text });
      return;
    }
    const recipients = connections.live(tagForUser(frame.to)).filter((c) => c !== conn);
    out.to = frame.to;
    const text = JSON.stringify(out);
    const unknown = "that user has no other connection in this room";
    if (recipients.length === 0) {
      // The user may be on another object of a sharded room: asked there now, answered (only if nobody
      // got it) in its place: the sender's later answers wait for that object's.
      const elsewhere = this.relayDirect?.(frame.to, text);
      if (elsewhere === undefined) {
        this.#error(conn, "unknown_recipient", unknown);
        return;
      }
      const answer = (got: number) => {
        if (got === 0 && !conn.isGone) connections.sendError(conn, "unknown_recipient", unknown);
      };
      this.#reply(conn, () => elsewhere.then(answer, () => answer(0)));
      return;
    }
    for (const target of recipients) connections.send(target, text);
  }
}
