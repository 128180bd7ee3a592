/**
 * Is the client still reading? The runtime gives a Durable Object no view of what waits in a
 * socket's outgoing buffer (no `bufferedAmount`), so every client echoes each `heartbeat` frame byte
 * for byte. A socket delivers in order, so an echo proves the client read everything sent before
 * that heartbeat. Each heartbeat carries a random nonce, fresh per connection and per heartbeat: a
 * client that reads nothing cannot guess the echo, nor copy it from another of its connections.
 *
 * Three rules close a client that stopped reading (4408 `not reading`), whatever else it sends:
 * - time: a heartbeat left unechoed for HEARTBEAT_TIMEOUT_MS (judged by the alarm; the state is in
 *   the socket attachment, so it survives hibernation);
 * - bytes, late: more than MAX_UNREAD_BYTES unread (sent since the last echoed heartbeat) while a
 *   heartbeat has waited for its echo longer than BEHIND_GRACE_MS: a burst that a reading client
 *   works through in seconds closes nobody;
 * - bytes, at once: more than HARD_FACTOR × MAX_UNREAD_BYTES unread, however recent.
 * The byte count is kept in memory: a hibernation (seconds without any event) starts it again, and
 * the time rule still holds across it. Heartbeats go out at every alarm, and also as soon as a
 * quarter of the budget is unread with none outstanding, so a client that reads is acknowledged long
 * before it nears the budget. The echo of the heartbeat before the newest counts too (for its part):
 * a client that lags by one heartbeat is still seen reading.
 */
import * as v from "valibot";

/** A heartbeat goes out early once this fraction of the byte budget is unread. */
export const PROBE_FRACTION = 1 / 4;
/** Over the budget, a client is closed once a heartbeat has waited this long for its echo. */
export const BEHIND_GRACE_MS = 10_000;
/** Past this many budgets unread, a client is closed at once. */
export const HARD_FACTOR = 4;

/** The heartbeats a connection has not echoed yet, as its attachment keeps them. */
export const AwaitingSchema = v.object({
  /** When the oldest heartbeat still unechoed went out, ms: what the time rule judges. */
  since: v.number(),
  /** The newest heartbeat's `timestamp` and `nonce`: its exact echo clears this. */
  at: v.number(),
  nonce: v.string(),
});
export type Awaiting = v.InferOutput<typeof AwaitingSchema>;

/** A heartbeat sent, and how much had been sent before it. */
export interface SentHeartbeat {
  text: string;
  /** `ReadWindow.sent` just before it: what its echo proves read. */
  before: number;
}

/** What one connection was sent since this object woke, and what it has shown it read (memory only). */
export interface ReadWindow {
  sent: number;
  read: number;
  /** The newest heartbeat not echoed yet, and the one before it. */
  newest: SentHeartbeat | undefined;
  previous: SentHeartbeat | undefined;
}

export function newReadWindow(newest?: SentHeartbeat): ReadWindow {
  return { sent: 0, read: 0, newest, previous: undefined };
}

export type ReadVerdict = "ok" | "probe" | "over";

/**
 * After a send (or at the alarm): fine, time for an early heartbeat, or behind for good. `now` is
 * asked only when the client is over the budget.
 */
export function judgeUnread(
  window: ReadWindow,
  awaiting: Awaiting | undefined,
  budget: number,
  now: () => number,
): ReadVerdict {
  const unread = window.sent - window.read;
  if (unread > budget * HARD_FACTOR) return "over";
  if (awaiting === undefined) return unread > budget * PROBE_FRACTION ? "probe" : "ok";
  if (unread > budget && now() - awaiting.since > BEHIND_GRACE_MS) return "over";
  return "ok";
}

/** Counts a heartbeat about to be sent: it becomes the newest, the newest the previous. */
export function recordHeartbeat(window: ReadWindow, text: string): void {
  window.previous = window.newest;
  window.newest = { text, before: window.sent };
  window.sent += text.length;
}

/**
 * Takes `message` if it is the exact echo of the newest heartbeat (nothing is awaited any more) or of
 * the one before it (the newest is still awaited, but from its own time); `undefined` otherwise.
 */
export function acknowledge(
  window: ReadWindow,
  awaiting: Awaiting | undefined,
  message: string | ArrayBuffer,
): { awaiting: Awaiting | undefined } | undefined {
  if (typeof message !== "string") return undefined;
  const { newest, previous } = window;
  if (newest !== undefined && message === newest.text) {
    window.read = Math.max(window.read, newest.before);
    window.newest = undefined;
    window.previous = undefined;
    return { awaiting: undefined };
  }
  if (previous !== undefined && awaiting !== undefined && message === previous.text) {
    window.read = Math.max(window.read, previous.before);
    window.previous = undefined;
    return { awaiting: { ...awaiting, since: awaiting.at } };
  }
  return undefined;
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
