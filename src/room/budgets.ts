/**
 * The room's memory budgets: the bytes sent to sockets and not seen read, over the room
 * (`ROOM_MAX_QUEUED_BYTES`, closing sockets included, since the runtime still holds what was queued
 * for them) and per user (`MAX_UNREAD_BYTES` over all its sockets). Past one, the slowest readers
 * (late with an echo, most unread first) are the ones to shed; readers that keep up never are.
 * The meter (meter.ts) counts into it; Connections (connections.ts) closes whom it names.
 */
import { type Connection, tagForUser } from "./connection";
import { BEHIND_GRACE_MS } from "./reading";
import { pickShed } from "./shedding";
import type { Users } from "./users";

/** How often a room over a queued-bytes budget looks for readers to shed, at most. */
const BUDGET_CHECK_MS = 250;

export interface BudgetSettings {
  /** One user's unread budget over all its sockets. */
  maxUnreadBytes: number;
  /** The room's, over all its sockets, closing ones included. */
  roomMaxQueuedBytes: number;
}

/** A reader to close, and which budget it was shed for. */
export type Shed = [conn: Connection, budget: "room" | "user"];

export class Budgets {
  readonly #settings: BudgetSettings;
  readonly #users: Users;
  /** Bytes sent to every socket the runtime still holds and not known read (memory estimate). */
  #queued = 0;
  /** Users over their unread budget since the last check. */
  #overUsers: Set<string> | undefined;
  /** When the budgets may next be checked. */
  #nextCheck = 0;

  constructor(settings: BudgetSettings, users: Users) {
    this.#settings = settings;
    this.#users = users;
  }

  /** Bytes the room has sent and not seen read, over every socket the runtime still holds. */
  get queuedBytes(): number {
    return this.#queued;
  }

  /** Counts `bytes` sent to `conn` against the room and its user. */
  sent(conn: Connection, bytes: number): void {
    this.#queued += bytes;
    const owner = conn.owner;
    owner.queued += bytes;
    if (owner.queued > this.#settings.maxUnreadBytes) {
      this.#overUsers ??= new Set();
      this.#overUsers.add(conn.attachment.user.id);
    }
  }

  /** Moves the room's and the owner's queued bytes by `delta` (read, or let go of). */
  move(conn: Connection, delta: number): void {
    this.#queued = Math.max(0, this.#queued + delta);
    conn.owner.queued = Math.max(0, conn.owner.queued + delta);
  }

  /**
   * The readers to shed now to get back within the budgets; none while within them. `live` lists the
   * open connections (of a socket tag).
   */
  due(now: number, live: (tag?: string) => Connection[]): Shed[] {
    const isOver = this.#overUsers !== undefined || this.#queued > this.#settings.roomMaxQueuedBytes;
    if (!isOver) return [];
    // A room kept over its budget by what closed sockets still hold would otherwise scan its readers
    // on every send. Only a reader seconds late can be shed, so a few checks a second lose nothing.
    if (now < this.#nextCheck) return [];
    this.#nextCheck = now + BUDGET_CHECK_MS;
    const shed: Shed[] = [];
    const overUsers = this.#overUsers;
    this.#overUsers = undefined;
    const budget = this.#settings.maxUnreadBytes;
    for (const userId of overUsers ?? []) {
      const owner = this.#users.get(userId, now);
      if (owner.queued <= budget) continue;
      for (const r of pickShed(readers(live(tagForUser(userId))), owner.queued, budget, now, BEHIND_GRACE_MS)) {
        shed.push([r.conn, "user"]);
      }
    }
    const roomBudget = this.#settings.roomMaxQueuedBytes;
    if (this.#queued <= roomBudget) return shed;
    // Closed for their user's budget already: not counted again for the room's.
    const taken = new Set(shed.map(([conn]) => conn));
    const rest = live().filter((conn) => !taken.has(conn));
    for (const r of pickShed(readers(rest), this.#queued, roomBudget, now)) shed.push([r.conn, "room"]);
    return shed;
  }
}

function readers(conns: Iterable<Connection>) {
  return [...conns].map((conn) => ({
    conn,
    unread: conn.window.sent - conn.window.read,
    awaitingSince: conn.attachment.awaiting?.since,
  }));
}
