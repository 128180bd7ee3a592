/**
 * What each socket still has to read: every frame written to a connection is counted against what
 * its client has shown it read (heartbeat echoes, src/room/reading.ts) and against the room's and its
 * user's budgets (src/room/budgets.ts). Every so many bytes unread it sends an early heartbeat, and it
 * says when a client is behind for good. Connections (connections.ts) decides whom to send to and
 * whom to close; this module writes and counts.
 */

import { type BudgetSettings, Budgets, type Shed } from "./budgets";
import type { Connection } from "./connection";
import { acknowledge, judgeUnread, nextHeartbeat, PROBE_FRACTION, recordHeartbeat } from "./reading";
import { saveAttachment, trySend } from "./socket-chores";
import type { Users } from "./users";

export class Meter {
  readonly #settings: BudgetSettings;
  readonly #budgets: Budgets;
  /** Bytes after which a connection gets an early heartbeat; smaller in a crowded room. */
  #probeStep: number;

  constructor(settings: BudgetSettings, users: Users) {
    this.#settings = settings;
    this.#budgets = new Budgets(settings, users);
    this.#probeStep = settings.maxUnreadBytes * PROBE_FRACTION;
  }

  /** A connection found open at a wake: what its window says was sent unread counts again. */
  restored(conn: Connection): void {
    this.#budgets.move(conn, conn.window.sent);
  }

  /** The runtime let go of a socket: what it held for the client is no longer ours to count. */
  letGo(conn: Connection): void {
    this.#budgets.move(conn, conn.window.read - conn.window.sent);
  }

  /**
   * The room now sends to `recipients` connections. A crowded room asks for echoes sooner, so that
   * a reader that stopped is seen late (and can be shed) before the room's queued bytes add up past
   * its budget.
   */
  spreadOver(recipients: number): void {
    const share = this.#settings.roomMaxQueuedBytes / (4 * Math.max(1, recipients));
    this.#probeStep = Math.min(this.#settings.maxUnreadBytes * PROBE_FRACTION, share);
  }

  /** Writes `frames` (each after `before`, when given) to `conn` and counts them; whether it is now behind. */
  write(
    conn: Connection,
    frames: ReadonlyArray<string | ArrayBuffer>,
    sizes: readonly number[],
    before?: string,
    beforeBytes = 0,
  ): boolean {
    let isBehind = false;
    for (let i = 0; i < frames.length; i++) {
      // Both sent before they are counted: nothing (an early heartbeat) comes between them.
      if (before !== undefined) trySend(conn.ws, before);
      trySend(conn.ws, frames[i] as string | ArrayBuffer);
      if (this.#count(conn, (sizes[i] as number) + beforeBytes)) isBehind = true;
    }
    return isBehind;
  }

  /**
   * Sends a heartbeat with a fresh nonce and records it in the attachment: its exact echo is what
   * proves the client read everything sent before it.
   */
  sendHeartbeat(conn: Connection, now: number): void {
    const next = nextHeartbeat(conn.attachment.awaiting, now);
    conn.attachment.awaiting = next.awaiting;
    recordHeartbeat(conn.window, next.text, now);
    this.#budgets.move(conn, next.text.length);
    saveAttachment(conn);
    trySend(conn.ws, next.text);
  }

  /**
   * Whether `message` is the exact echo of a heartbeat `conn` owes, and if so takes it. The caller
   * saves the attachment.
   */
  takeEcho(conn: Connection, message: string | ArrayBuffer): boolean {
    const before = conn.window.read;
    const taken = acknowledge(conn.window, conn.attachment.awaiting, message);
    if (taken === undefined) return false;
    conn.attachment.awaiting = taken.awaiting;
    this.#budgets.move(conn, before - conn.window.read);
    return true;
  }

  /** Whether `conn` is behind for good (for the alarm, which sends nothing to a quiet room). */
  isBehind(conn: Connection, now: number): boolean {
    return judgeUnread(conn.window, conn.attachment.awaiting, this.#settings.maxUnreadBytes, () => now) === "over";
  }

  /** Bytes the room has sent and not seen read, over every socket the runtime still holds. */
  get queuedBytes(): number {
    return this.#budgets.queuedBytes;
  }

  /** The readers to shed now to get back within the budgets (src/room/budgets.ts). */
  due(now: number, live: (tag?: string) => Connection[]): Shed[] {
    return this.#budgets.due(now, live);
  }

  /**
   * Counts `bytes` sent to `conn`: sends an early heartbeat every quarter of the budget, and says
   * whether the client is behind for good.
   */
  #count(conn: Connection, bytes: number): boolean {
    conn.window.sent += bytes;
    this.#budgets.sent(conn, bytes);
    const budget = this.#settings.maxUnreadBytes;
    const verdict = judgeUnread(conn.window, conn.attachment.awaiting, budget, Date.now, this.#probeStep);
    if (verdict === "probe") this.sendHeartbeat(conn, Date.now());
    return verdict === "over";
  }
}
