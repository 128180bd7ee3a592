/** Who is online in a room: users and their connection counts, rebuilt from the sockets on wake. */
import type { PresenceEntry, User } from "./protocol";

export class Presence {
  readonly #users = new Map<string, PresenceEntry>();

  /** Counts a connection in; true when it is the user's first (a `join`). */
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

  /** Counts a connection out; true when it was the user's last (a `leave`). */
  remove(userId: string): boolean {
    const entry = this.#users.get(userId);
    if (!entry) return false;
    entry.connections -= 1;
    if (entry.connections > 0) return false;
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
