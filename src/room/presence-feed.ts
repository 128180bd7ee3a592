/**
 * The room's presence as its members see it: who is here (src/room/presence.ts) and the `join`/`leave`
 * frames, with the grace that keeps a quick reconnect from being a `leave` plus a `join` for all.
 * The frames go out through one queue, batched (src/room/presence-queue.ts).
 *
 * Above PRESENCE_ROSTER_MAX users (src/room/roster-mode.ts) nothing of that goes out: members are
 * told with a `roster` frame, then get `occupancy` frames; back at or below it, a `roster` frame
 * with the whole list replaces what they held.
 *
 * In a sharded room the list is the room's: this object's own users and the mirror of the others'
 * (src/room/presence-mirror.ts). A user's first connection here is a `join` only when no other object
 * has it, its last one a `leave` likewise; the mirror's changes are joins and leaves too.
 */

import { describeError, log } from "../common/log";
import type { OccupancyFrame, PresenceEntry, PresenceFrame, RosterFrame, User } from "../protocol";
import type { Connections } from "./connections";
import { Presence } from "./presence";
import { mergeRosters, PresenceMirror } from "./presence-mirror";
import { PresenceQueue } from "./presence-queue";
import { OccupancyThrottle, RosterMode } from "./roster-mode";

/**
 * The least grace of a user whose last connection here was sent to another object of a sharded room
 * (4307): its reconnect there must reach this object's mirror (a report, then a push) first.
 */
export const MOVED_GRACE_MS = 3000;

/** `occupancy` frames go out at most this often. */
export const OCCUPANCY_INTERVAL_MS = 1000;

/** Most states held for users not listed here yet (their join is on its way from the orderer). */
const EARLY_STATES_MAX = 256;

export interface PresenceFeedOptions {
  /** PRESENCE_ROSTER_MAX; without it, always the roster. */
  rosterMax?: number;
  /** Where the roster mode is kept over a wake. */
  store?: SyncKvStorage;
}

export class PresenceFeed {
  readonly #presence = new Presence();
  /** Users whose last connection went, until the grace decides whether that was a leave. */
  readonly #leaveTimers = new Map<string, number>();
  readonly #graceMs: number;
  readonly #connections: () => Connections;
  readonly #queue: PresenceQueue;
  /** Told of each announcement (webhook events, src/room/room-events.ts). */
  onAnnounced: ((event: PresenceFrame["event"], user: User, online: number) => void) | undefined;
  /** The room-wide counts when the room is spread over several objects (they decide the mode there). */
  wide: (() => OccupancyFrame | undefined) | undefined;
  /** This object's own users came, went or changed their connection count (a sharded room reports them). */
  onLocalChange: (() => void) | undefined;
  /** The users of the room's other objects, in a sharded room. */
  readonly mirror: PresenceMirror;
  /** Adds each user's presence state to a list (src/room/presence-states.ts). */
  decorate: (entries: PresenceEntry[]) => PresenceEntry[] = (entries) => entries;
  readonly #mode: RosterMode;
  readonly #occupancy: OccupancyThrottle;
  /**
   * Sharded: states relayed for users of another object that this one does not list yet. A user's
   * first state is relayed at once, its join comes with the orderer's next push (a report, then a
   * push: some 300 ms); members get the join first and the state right after it, as in one object.
   */
  readonly #early = new Map<string, PresenceFrame>();

  constructor(graceMs: number, connections: () => Connections, options: PresenceFeedOptions = {}) {
    this.#graceMs = graceMs;
    this.#connections = connections;
    this.#queue = new PresenceQueue(connections);
    this.#mode = new RosterMode(options.rosterMax ?? Number.POSITIVE_INFINITY, options.store);
    this.mirror = new PresenceMirror(options.store);
    this.#occupancy = new OccupancyThrottle(OCCUPANCY_INTERVAL_MS, (frame) => this.#connections().broadcast(frame));
  }

  /** Whether members get the roster (else counts only). */
  get isFull(): boolean {
    return this.#mode.isFull;
  }

  /** The counts as an `occupancy` frame would carry them now: room-wide where known. */
  occupancyNow(): OccupancyFrame {
    return (
      this.wide?.() ?? {
        type: "occupancy",
        online: this.online,
        connections: this.#connections().liveCount(),
      }
    );
  }

  /**
   * Connections or users came or went (here, or room-wide): the mode may switch, and in counts mode
   * an unsharded room sends `occupancy` (a sharded room's orderer sends it for the whole room).
   */
  countsChanged(): void {
    this.#recheck();
    if (!this.#mode.isFull && this.wide?.() === undefined) {
      this.#occupancy.changed(() =>
        this.#mode.isFull || this.wide?.() !== undefined ? undefined : this.occupancyNow(),
      );
    }
  }

  /** Switches the mode if the count says so, and tells every member; whether it switched. */
  #recheck(): boolean {
    if (!this.#mode.update(this.wide?.()?.online ?? this.online)) return false;
    const isFull = this.#mode.isFull;
    // Switching to counts: what was queued is moot. Back to the roster: the list replaces it all.
    if (!isFull) this.#queue.clear();
    else this.#occupancy.reset();
    const frame: RosterFrame = { type: "roster", roster: isFull, presence: isFull ? this.roomList() : [] };
    log("info", "presence_mode", { roster: isFull, online: this.wide?.()?.online ?? this.online });
    this.#queue.push(JSON.stringify(frame));
    return true;
  }

  /** A connection found open at a wake: its user is here (nothing to announce). */
  restored(user: User): void {
    this.#presence.add(user);
  }

  /** A new connection: announces `join` to the others when its user was not here (nor lingering). */
  arrived(user: User, ws: WebSocket): void {
    const isFirst = this.#presence.add(user);
    this.#cancelLeave(user.id); // back within the grace: neither a leave nor a join
    if (isFirst) this.#announce("join", user, ws);
    this.onLocalChange?.();
  }

  /**
   * A connection was counted out. When it was its user's last, the `leave` waits PRESENCE_GRACE_MS
   * for a reconnect. A plain timer, not the alarm: it keeps the object awake for the grace only,
   * and an eviction meanwhile drops every socket, so every client gets a fresh `welcome.presence`.
   * A user `isMoved` to another object waits at least MOVED_GRACE_MS.
   */
  departed(user: User, isMoved = false): void {
    const grace = isMoved ? Math.max(this.#graceMs, MOVED_GRACE_MS) : this.#graceMs;
    const isLast = this.#presence.remove(user.id, grace > 0);
    this.onLocalChange?.();
    if (!isLast) return;
    if (grace === 0) {
      this.#announce("leave", user);
      return;
    }
    this.#cancelLeave(user.id);
    const timer = setTimeout(() => {
      this.#leaveTimers.delete(user.id);
      try {
        if (this.#presence.settle(user.id)) {
          this.#announce("leave", user);
          this.onLocalChange?.();
        }
      } catch (error) {
        log("error", "presence_failed", { user: user.id, ...describeError(error) });
      }
    }, grace);
    this.#leaveTimers.set(user.id, timer);
  }

  /** A connection found closing at a wake was never counted in: announce a leave if nobody is left. */
  leftUncounted(user: User, hasOthers: boolean): void {
    if (!hasOthers && !this.#presence.has(user.id)) this.#announce("leave", user);
  }

  /** This object's own users (with 0 connections while in their grace), without states. */
  list(): PresenceEntry[] {
    return this.#presence.list();
  }

  /** The room's users with their states: this object's and, in a sharded room, the mirror's. */
  roomList(): PresenceEntry[] {
    const own = this.decorate(this.#presence.list());
    return this.mirror.isKnown ? mergeRosters([own, this.mirror.entries()]) : own;
  }

  /**
   * The orderer told the users of the room's other objects: members get a `join` or a `leave` for
   * each user that came into or went out of the room, or, when the list was not known (a wake),
   * the whole roster in a `roster` frame.
   */
  setMirror(users: readonly PresenceEntry[]): void {
    const change = this.mirror.replace(users, (id) => this.#presence.has(id));
    const early = new Map<string, PresenceFrame>();
    for (const [id, frame] of this.#early) {
      if (!this.mirror.has(id) && !this.#presence.has(id)) continue; // still not listed: kept
      this.#early.delete(id);
      if (!this.mirror.has(id)) continue;
      this.mirror.setState(id, frame.state);
      early.set(id, frame);
    }
    if (change.wasUnknown) {
      if (this.#mode.isFull && this.#connections().liveCount() > 0) {
        const roster: RosterFrame = { type: "roster", roster: true, presence: this.roomList() };
        this.#queue.push(JSON.stringify(roster));
      }
      return;
    }
    // Each frame carries the count after it, as in one object (not the count after the whole push).
    let online = this.online - change.joined.length + change.left.length;
    for (const entry of change.left) this.#frame("leave", { id: entry.id, name: entry.name }, undefined, --online);
    for (const entry of change.joined) {
      this.#frame("join", { id: entry.id, name: entry.name }, undefined, ++online);
      const state = early.get(entry.id)?.state ?? entry.state;
      if (state === undefined) continue;
      const update: PresenceFrame = {
        type: "presence",
        event: "update",
        user: { id: entry.id, name: entry.name },
        state,
        online: this.online,
      };
      this.queue(JSON.stringify(update));
    }
  }

  /** A presence-state `update` relayed from another object: to the members, and into the mirror. */
  relayedUpdate(frame: string): void {
    let parsed: PresenceFrame | undefined;
    try {
      parsed = JSON.parse(frame) as PresenceFrame;
    } catch {
      // Built by another object of this room from a valid state: never malformed.
    }
    const id = parsed?.user.id;
    if (parsed !== undefined && id !== undefined && !this.mirror.has(id) && !this.#presence.has(id)) {
      // Not listed here yet: it goes out after the user's join (setMirror).
      this.#early.delete(id);
      this.#early.set(id, parsed);
      const oldest = this.#early.keys().next().value;
      if (this.#early.size > EARLY_STATES_MAX && oldest !== undefined) this.#early.delete(oldest);
      return;
    }
    this.queue(frame);
    if (id !== undefined) this.mirror.setState(id, parsed?.state);
  }

  /** This object's own user count (a shard reports it; the room's is `online`). */
  get localOnline(): number {
    return this.#presence.online;
  }

  /** Whether the user is here (lingering in its grace included). */
  has(userId: string): boolean {
    return this.#presence.has(userId);
  }

  /** The room's users: this object's, and the mirror's that are not here too. */
  get online(): number {
    let online = this.#presence.online;
    if (this.mirror.isKnown) for (const entry of this.mirror.entries()) if (!this.#presence.has(entry.id)) online++;
    return online;
  }

  #cancelLeave(userId: string): void {
    const timer = this.#leaveTimers.get(userId);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.#leaveTimers.delete(userId);
  }

  /**
   * Queues a presence frame for every connection but `except`. One queue for joins, leaves and
   * state updates (src/room/presence-states.ts), so that they keep their order.
   */
  queue(frame: string, except?: WebSocket): void {
    if (this.#mode.isFull) this.#queue.push(frame, except);
  }

  /** This object's own user came or went: the webhook event, and the frame unless another object has the user. */
  #announce(event: PresenceFrame["event"], user: User, except?: WebSocket): void {
    this.onAnnounced?.(event, user, this.#presence.online);
    if (!this.mirror.has(user.id)) this.#frame(event, user, except);
  }

  #frame(event: PresenceFrame["event"], user: User, except?: WebSocket, online = this.online): void {
    const frame: PresenceFrame = { type: "presence", event, user, online };
    // A switch sends the news itself (a `roster` frame); in counts mode nothing goes out.
    if (!this.#recheck()) this.queue(JSON.stringify(frame), except);
    if (!this.#mode.isFull) this.countsChanged();
  }

  /** Sends what is queued now, ahead of a frame from a member (`Connections.beforeOthers`). */
  flushPending(): void {
    this.#queue.flushPending();
  }
}
