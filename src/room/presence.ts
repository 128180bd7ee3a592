/**
 * Who is online in a room: users and their connection counts, rebuilt from the sockets on wake.
 *
 * A user whose last connection goes lingers (with 0 connections) until the room settles it after
 * PRESENCE_GRACE_MS: a reconnect within the grace (a page reload, a network switch) is then neither
 * a `leave` nor a `join` for everyone else.
 */
import type { PresenceEntry, User } from "../protocol";

export class Presence {
  readonly #users = new Map<string, PresenceEntry>();

  /** Counts a connection in; true when the user was not here, lingering or not (a `join`). */
  add(user: User): boolean {
    const entry = this.#users.get(user.id);
    if (entry) {
      entry.connections += 1;
      entry.name = user.name;
      return false;
    }
    this.#users.set(user.id, { id: user.id, name: user.name, connections: 1 });
    return true;
  }

  /**
   * Counts a connection out; true when it was the user's last. With `linger`, the user stays listed
   * with 0 connections until `settle`; without it, it is gone now.
   */
  remove(userId: string, linger = false): boolean {
    const entry = this.#users.get(userId);
    if (!entry || entry.connections === 0) return false;
    entry.connections -= 1;
    if (entry.connections > 0) return false;
    if (!linger) this.#users.delete(userId);
    return true;
  }

  /** Ends a lingering user's grace: true when it did not come back (a `leave` is due). */
  settle(userId: string): boolean {
    const entry = this.#users.get(userId);
    if (!entry || entry.connections > 0) return false;
    this.#users.delete(userId);
    return true;
  }

  has(userId: string): boolean {
    return this.#users.has(userId);
  }

  get online(): number {
    return this.#users.size;
  }

  list(): PresenceEntry[] {
    return [...this.#users.values()].map((e) => ({ ...e }));
  }
}
