/**
 * Frames that are never stored: signals (src/room/signals.ts) and presence states
 * (src/room/presence-states.ts). They have their own bounds (a size cap each, the signal bucket, the
 * coalescing of updates) instead of the message buckets, so a room's ephemeral traffic cannot starve
 * its messages. The room tells them by their parsed type before it asks the message buckets
 * (src/room/inbound.ts); one over `maxBytes` cannot be valid and takes the message buckets.
 */

import type { Config } from "../common/config";
import type { ClientPresenceFrame, ClientSignalFrame } from "../protocol";
import { byteLength, utf8Length } from "./bytes";
import type { Connection } from "./connection";
import type { Connections } from "./connections";
import { type PresenceOut, PresenceStates } from "./presence-states";
import { type ErrorReply, errorReply, type Reply, Signals } from "./signals";

export type EphemeralFrame = ClientSignalFrame | ClientPresenceFrame;

type Limits = Pick<Config, "signalMaxBytes" | "signalRatePerSecond" | "signalRateBurst" | "presenceStateMaxBytes">;

/** Whether a parsed frame claims to be ephemeral (the schema then decides whether it is valid). */
export function isEphemeralType(raw: unknown): boolean {
  if (typeof raw !== "object" || raw === null) return false;
  const type = (raw as { type?: unknown }).type;
  return type === "signal" || type === "presence";
}

export class Ephemeral {
  readonly signals: Signals;
  readonly states: PresenceStates;
  /** The largest valid signal or presence frame could be this long (a bound, not the exact caps). */
  readonly maxBytes: number;
  readonly #limits: Limits;
  readonly #reply: ErrorReply;

  constructor(connections: () => Connections, presence: PresenceOut, limits: Limits, reply: Reply) {
    this.#limits = limits;
    this.#reply = errorReply(connections, reply);
    // A presence frame's own fields and some whitespace around a state at its cap.
    this.maxBytes = Math.max(limits.signalMaxBytes, limits.presenceStateMaxBytes + 256);
    this.signals = new Signals(connections, limits, reply);
    this.states = new PresenceStates(connections, presence);
  }

  /** A valid `signal` or `presence` frame, as `message` (its text) came in. */
  onFrame(conn: Connection, frame: EphemeralFrame, message: string, now: number): void {
    const limits = this.#limits;
    if (frame.type === "signal") {
      if (utf8Length(message, limits.signalMaxBytes) > limits.signalMaxBytes) {
        this.#reply(
          conn,
          "invalid_message",
          `a signal frame may take ${limits.signalMaxBytes} bytes (SIGNAL_MAX_BYTES)`,
        );
        return;
      }
      this.signals.onSignal(conn, frame, now);
      return;
    }
    // Like signals: readonly is the role of audiences that must not reach the others.
    if (conn.attachment.role === "readonly") {
      this.#reply(conn, "forbidden", "this connection is read-only");
      return;
    }
    if (byteLength(JSON.stringify(frame.state)) > limits.presenceStateMaxBytes) {
      const text = `a presence state may take ${limits.presenceStateMaxBytes} bytes of JSON (PRESENCE_STATE_MAX_BYTES)`;
      this.#reply(conn, "invalid_message", text);
      return;
    }
    this.states.set(conn, frame.state, now);
  }
}
