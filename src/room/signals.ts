/**
 * Ephemeral signals (typing indicators, cursors): relayed at once to the room's other connections,
 * or to one user's, never stored, no seq, not replayed on resume. Each user has its own signal bucket
 * in the room, apart from the message buckets, so cursor traffic can neither starve messages nor be
 * starved by them.
 */

import type { Config } from "../common/config";
import type { ClientSignalFrame, SignalFrame } from "../protocol";
import { type Connection, tagForUser } from "./connection";
import type { Connections } from "./connections";
import { type RateLimits, take } from "./rate-limit";

/** How the room answers a connection (after its queued messages: src/room/messages.ts `reply`). */
export type Reply = (conn: Connection, code: "forbidden" | "rate_limited" | "unknown_recipient", text: string) => void;

export class Signals {
  readonly #connections: () => Connections;
  readonly #limits: RateLimits;
  readonly #reply: Reply;

  constructor(
    connections: () => Connections,
    config: Pick<Config, "signalRatePerSecond" | "signalRateBurst">,
    reply: Reply,
  ) {
    this.#connections = connections;
    this.#reply = reply;
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
      this.#reply(conn, "rate_limited", "too many signals; some were dropped (SIGNAL_RATE_PER_SECOND)");
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
      this.#reply(conn, "forbidden", "this connection is read-only");
      return;
    }
    if (!this.take(conn, now)) return;
    const connections = this.#connections();
    const out: SignalFrame = { type: "signal", from: user, data: frame.data };
    if (frame.to === undefined) {
      connections.broadcast(JSON.stringify(out), conn.ws);
      return;
    }
    const recipients = connections.live(tagForUser(frame.to)).filter((c) => c !== conn);
    if (recipients.length === 0) {
      this.#reply(conn, "unknown_recipient", "that user has no other connection in this room");
      return;
    }
    out.to = frame.to;
    const text = JSON.stringify(out);
    for (const target of recipients) connections.send(target, text);
  }
}
