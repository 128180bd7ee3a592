/**
 * Is the client still reading? The runtime gives a Durable Object no view of what waits in a
 * socket's outgoing buffer (no `bufferedAmount`), so every client echoes each `heartbeat` frame byte
 * for byte. A socket delivers in order, so an echo proves the client read everything sent before
 * that heartbeat. Each heartbeat carries a random nonce, fresh per connection and per heartbeat: a
 * client that reads nothing cannot guess the echo, nor copy it from another of its connections.
 *
 * Two rules close a client that stopped reading (4408 `not reading`), whatever else it still sends:
 * - time: a heartbeat left unechoed for HEARTBEAT_TIMEOUT_MS (judged by the alarm; the state is in
 *   the socket attachment, so it survives hibernation);
 * - bytes: more than MAX_UNREAD_BYTES sent since the last echoed heartbeat (judged at each send).
 *   Counted in memory: a hibernation (seconds of silence) starts the count again, and the time rule
 *   still holds across it.
 * Heartbeats go out at every alarm, and also as soon as a quarter of the budget is unread with none
 * outstanding, so a client that reads is acknowledged long before it nears the budget.
 */
import * as v from "valibot";

/** A heartbeat goes out early once this fraction of the byte budget is unread. */
export const PROBE_FRACTION = 1 / 4;

/** The newest heartbeat a connection has not echoed yet, kept in its attachment. */
export const AwaitingSchema = v.object({
  /** When the oldest heartbeat still unechoed went out, ms: what the time rule judges. */
  since: v.number(),
  /** The newest heartbeat's `timestamp` and `nonce`: only its exact echo counts. */
  at: v.number(),
  nonce: v.string(),
});
export type Awaiting = v.InferOutput<typeof AwaitingSchema>;

/** Bytes sent to one connection since this object woke (memory only). */
export interface ReadWindow {
  sent: number;
  /** `sent` when the newest heartbeat went out. */
  probed: number;
  /** `sent` when the heartbeat the client last echoed went out: it has read at least this much. */
  read: number;
}

export function newReadWindow(): ReadWindow {
  return { sent: 0, probed: 0, read: 0 };
}

export type ReadVerdict = "ok" | "probe" | "over";

/** After counting a send: fine, time for an early heartbeat, or too much unread. */
export function judgeUnread(window: ReadWindow, isAwaiting: boolean, budget: number): ReadVerdict {
  const unread = window.sent - window.read;
  if (unread > budget) return "over";
  if (!isAwaiting && unread > budget * PROBE_FRACTION) return "probe";
  return "ok";
}

/** The exact text of a heartbeat frame; its echo must match it byte for byte. */
export function heartbeatText(at: number, nonce: string): string {
  return `{"type":"heartbeat","timestamp":${at},"nonce":"${nonce}"}`;
}

/** 64 random bits as 16 hex digits. */
export function newNonce(): string {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return (words[0] ?? 0).toString(16).padStart(8, "0") + (words[1] ?? 0).toString(16).padStart(8, "0");
}

/**
 * Records a heartbeat about to go out at `now`: returns its text and the new awaiting state, which
 * keeps the oldest unechoed heartbeat's time.
 */
export function nextHeartbeat(awaiting: Awaiting | undefined, now: number): { text: string; awaiting: Awaiting } {
  const nonce = newNonce();
  return { text: heartbeatText(now, nonce), awaiting: { since: awaiting?.since ?? now, at: now, nonce } };
}
