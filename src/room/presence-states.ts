/**
 * Presence state: a small JSON object per user (not per connection: the user's connections share
 * it, and the last one set wins), shown in `welcome.presence`, the HTTP API's room info and
 * presence `update` frames. Updates are coalesced (src/room/coalesce.ts): at most one frame per user
 * per PRESENCE_UPDATE_INTERVAL_MS, with the newest state, however often it changes.
 *
 * The state lives in memory and in the socket attachment of each of its user's connections, so it
 * survives hibernation and eviction; it is forgotten once the user has left (after the grace).
 */

import { describeError, log } from "../common/log";
import {
  PRESENCE_UPDATE_INTERVAL_MS,
  type PresenceEntry,
  type PresenceFrame,
  type PresenceState,
  type User,
} from "../protocol";
import { Coalescer, type Schedule } from "./coalesce";
import { type Connection, tagForUser } from "./connection";
import type { Connections } from "./connections";
import type { RelayItem } from "./relay";
import { saveAttachment } from "./socket-chores";

/** Where updates go out: the room's presence feed (src/room/presence-feed.ts), in order with joins and leaves. */
export interface PresenceOut {
  readonly online: number;
  /** False above PRESENCE_ROSTER_MAX: updates are not sent (src/room/roster-mode.ts). */
  readonly isFull?: boolean;
  queue(frame: string): void;
}

interface Held {
  user: User;
  state: PresenceState;
  /** When it was set (ms): after a wake, the newest of the user's attachments wins. */
  at: number;
}

export class PresenceStates {
  readonly #byUser = new Map<string, Held>();
  readonly #connections: () => Connections;
  readonly #feed: PresenceOut;
  readonly #updates: Coalescer<string, Held>;
  /** In a sharded room: updates go on to the room's other objects (src/room/relay.ts). */
  relay: ((item: RelayItem) => void) | undefined;

  constructor(connections: () => Connections, feed: PresenceOut, options: { schedule?: Schedule } = {}) {
    this.#connections = connections;
    this.#feed = feed;
    // A plain timer of at most PRESENCE_UPDATE_INTERVAL_MS, not the alarm: it keeps the object awake
    // that long only, and an update lost to an eviction meanwhile is in the attachments, so every
    // client gets it in its next `welcome` (an eviction drops every socket).
    this.#updates = new Coalescer(PRESENCE_UPDATE_INTERVAL_MS, (_, held) => this.#announce(held), options);
  }

  /** A `presence` frame from `conn`: its user's new state, announced soon (coalesced). */
  set(conn: Connection, state: PresenceState, now: number): void {
    const user = conn.attachment.user;
    const held: Held = { user, state, at: now };
    this.#byUser.set(user.id, held);
    this.#updates.push(user.id, held, now);
  }

  /** A connection found open at a wake: its attachment may hold its user's state. */
  restored(conn: Connection): void {
    const saved = conn.attachment.presence;
    if (saved === undefined) return;
    const held = this.#byUser.get(conn.attachment.user.id);
    if (held === undefined || held.at < saved.at) {
      this.#byUser.set(conn.attachment.user.id, { user: conn.attachment.user, ...saved });
    }
  }

  /** A new connection: a user that was not here starts without a state; one still here keeps it. */
  arrived(conn: Connection, wasHere: boolean): void {
    const userId = conn.attachment.user.id;
    if (!wasHere) {
      this.forget(userId);
      return;
    }
    const held = this.#byUser.get(userId);
    if (held === undefined) return;
    conn.attachment.presence = { state: held.state, at: held.at };
    saveAttachment(conn);
  }

  forget(userId: string): void {
    this.#byUser.delete(userId);
    this.#updates.forget(userId);
  }

  /** Forgets the states of users no longer here (called from the alarm). */
  prune(isHere: (userId: string) => boolean): void {
    for (const userId of [...this.#byUser.keys()]) if (!isHere(userId)) this.forget(userId);
  }

  /** The presence list with each user's state. */
  decorate(entries: PresenceEntry[]): PresenceEntry[] {
    for (const entry of entries) {
      const held = this.#byUser.get(entry.id);
      if (held !== undefined) entry.state = held.state;
    }
    return entries;
  }

  /** Sends the update to everyone (the sender's connections too) and saves it in the user's attachments. */
  #announce(held: Held): void {
    try {
      const connections = this.#connections();
      if (this.#byUser.get(held.user.id) !== held) return; // forgotten meanwhile (the user left)
      for (const conn of connections.live(tagForUser(held.user.id))) {
        conn.attachment.presence = { state: held.state, at: held.at };
        saveAttachment(conn);
      }
      const frame: PresenceFrame = {
        type: "presence",
        event: "update",
        user: held.user,
        state: held.state,
        online: this.#feed.online,
      };
      const text = JSON.stringify(frame);
      this.#feed.queue(text);
      if (this.#feed.isFull !== false) this.relay?.({ frame: text, presence: true });
    } catch (error) {
      // From a timer: nothing above it would catch this.
      log("error", "presence_failed", { user: held.user.id, ...describeError(error) });
    }
  }
}
