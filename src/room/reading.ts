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
 * the time rule still holds across it. Heartbeats go out at every alarm, and also every quarter of
 * the budget sent (up to MAX_PENDING awaiting their echo), so a client that reads is acknowledged
 * step by step, even through a long burst. The echo of any heartbeat still awaited counts, for what
 * was sent before it: a client that lags behind by a few heartbeats is still seen reading.
 */
import * as v from "valibot";

/** A heartbeat goes out early once this fraction of the byte budget is unread. */
export const PROBE_FRACTION = 1 / 4;
/** Over the budget, a client is closed once a heartbeat has waited this long for its echo. */
export const BEHIND_GRACE_MS = 10_000;
/** Past this many budgets unread, a client is closed at once. */
export const HARD_FACTOR = 4;
/** Heartbeats awaiting their echo that a connection keeps track of; early ones stop at this many. */
export const MAX_PENDING = 8;

/** The heartbeats a connection has not echoed yet, as its attachment keeps them. */
export const AwaitingSchema = v.object({
  /** When the oldest heartbeat still unechoed went out, ms: what the time rule judges. */
  since: v.number(),
  /** The newest heartbeat's `timestamp` and `nonce`: its exact echo clears this. */
  at: v.number(),
  nonce: v.string(),
});
export type Awaiting = v.InferOutput<typeof AwaitingSchema>;

/** A heartbeat sent, when, and how much had been sent before it. */
export interface SentHeartbeat {
  text: string;
  at: number;
  /** `ReadWindow.sent` just before it: what its echo proves read. */
  before: number;
}

/** What one connection was sent since this object woke, and what it has shown it read (memory only). */
export interface ReadWindow {
  sent: number;
  read: number;
  /** Heartbeats awaiting their echo, oldest first (at most MAX_PENDING). */
  pending: SentHeartbeat[];
}

export function newReadWindow(pending: SentHeartbeat[] = []): ReadWindow {
  return { sent: 0, read: 0, pending };
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
  probeStep = budget * PROBE_FRACTION,
): ReadVerdict {
  const unread = window.sent - window.read;
  if (unread > budget * HARD_FACTOR) return "over";
  if (awaiting !== undefined && unread > budget && now() - awaiting.since > BEHIND_GRACE_MS) return "over";
  // Another early heartbeat once `probeStep` (a quarter of the budget, less in a crowded room) went
  // out since the newest one (or since what is known read, when none is awaited).
  const pending = window.pending;
  const from = pending.at(-1)?.before ?? window.read;
  if (window.sent - from > probeStep && pending.length < MAX_PENDING) return "probe";
  return "ok";
}

/** Counts a heartbeat about to be sent at `at`; past MAX_PENDING, the oldest is no longer tracked. */
export function recordHeartbeat(window: ReadWindow, text: string, at: number): void {
  window.pending.push({ text, at, before: window.sent });
  if (window.pending.length > MAX_PENDING) window.pending.shift();
  window.sent += text.length;
}

/**
 * Takes `message` if it is the exact echo of a heartbeat still awaited: what was sent before it is
 * read, it and every older one are done, and the wait goes on from the next one's time (or ends).
 * `undefined` when it is no such echo.
 */
export function acknowledge(
  window: ReadWindow,
  awaiting: Awaiting | undefined,
  message: string | ArrayBuffer,
): { awaiting: Awaiting | undefined } | undefined {
  if (typeof message !== "string" || awaiting === undefined) return undefined;
  const pending = window.pending;
  const i = pending.findIndex((h) => h.text === message);
  const echoed = pending[i];
  if (echoed === undefined) return undefined;
  window.read = Math.max(window.read, echoed.before);
  pending.splice(0, i + 1);
  const next = pending[0];
  return { awaiting: next === undefined ? undefined : { ...awaiting, since: next.at } };
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
