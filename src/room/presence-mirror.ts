/**
 * The users of a sharded room's other objects, as the orderer last told this one (docs/scaling.md,
 * "Presence"): what turns an object's own roster into the room's. Keyed by user, not by object: a
 * user moving between objects is in some object's list all along, so it is neither a leave nor a
 * join. Unknown (`undefined`) in a room of one object. It is stored (one key, written when a user
 * came or went), so that an object that wakes goes on diffing what its members hold; without it (a new
 * object, a failed write) the feed (src/room/presence-feed.ts) sends them the whole list in a
 * `roster` frame when the orderer tells it the users.
 */
import type { PresenceEntry } from "../protocol";

/** One list by user: a user in several (it is moving) counts once, with its connections summed. */
export function mergeRosters(lists: Iterable<readonly PresenceEntry[]>): PresenceEntry[] {
  const byId = new Map<string, PresenceEntry>();
  for (const list of lists) {
    for (const entry of list) {
      const held = byId.get(entry.id);
      if (held === undefined) byId.set(entry.id, { ...entry });
      else {
        held.connections += entry.connections;
        if (held.state === undefined && entry.state !== undefined) held.state = entry.state;
      }
    }
  }
  return [...byId.values()];
}

/** What a new list changes for this object's members: who came and who went, room-wide. */
export interface MirrorChange {
  joined: PresenceEntry[];
  left: PresenceEntry[];
  /** The list was not known before: members must be sent the whole roster. */
  wasUnknown: boolean;
}

const STORED_KEY = "rosterMirror";

const idsOf = (users: Map<string, PresenceEntry>) => [...users.keys()].sort().join("\n");

export class PresenceMirror {
  #users: Map<string, PresenceEntry> | undefined;
  readonly #store: SyncKvStorage | undefined;
  /** Who the stored list holds (its ids), to write only when that changes. */
  #storedIds = "";

  constructor(store?: SyncKvStorage) {
    this.#store = store;
    const saved = store?.get<string>(STORED_KEY);
    if (saved === undefined) return;
    try {
      const users = JSON.parse(saved) as PresenceEntry[];
      this.#users = new Map(users.map((e) => [e.id, e]));
      this.#storedIds = idsOf(this.#users);
    } catch {
      // Unreadable: unknown, as in a new object.
    }
  }

  get isKnown(): boolean {
    return this.#users !== undefined;
  }

  has(userId: string): boolean {
    return this.#users?.has(userId) ?? false;
  }

  get size(): number {
    return this.#users?.size ?? 0;
  }

  entries(): PresenceEntry[] {
    return this.#users === undefined ? [] : [...this.#users.values()];
  }

  /** Replaces the list; `isLocal` says whether a user has a connection (or its grace) here. */
  replace(next: readonly PresenceEntry[], isLocal: (userId: string) => boolean): MirrorChange {
    const before = this.#users;
    const after = new Map<string, PresenceEntry>();
    for (const entry of next) {
      // A state relayed since the report was made is newer than the report's: keep it.
      const state = before?.get(entry.id)?.state ?? entry.state;
      after.set(entry.id, { ...entry, ...(state === undefined ? {} : { state }) });
    }
    this.#users = after;
    this.#save();
    if (before === undefined) return { joined: [], left: [], wasUnknown: true };
    const joined = [...after.values()].filter((e) => !before.has(e.id) && !isLocal(e.id));
    const left = [...before.values()].filter((e) => !after.has(e.id) && !isLocal(e.id));
    return { joined, left, wasUnknown: false };
  }

  /**
   * Written when a push brought or took a user, not for connection counts or states (a member's
   * reconnect churn would be a write in every object): what is stored is a wake's base for diffing
   * joins and leaves, and the next push after a wake corrects the rest.
   */
  #save(): void {
    const users = this.#users;
    if (this.#store === undefined || users === undefined) return;
    const ids = idsOf(users);
    if (ids === this.#storedIds) return;
    try {
      this.#store.put(STORED_KEY, JSON.stringify([...users.values()]));
      this.#storedIds = ids;
    } catch {
      // Not stored: a wake then sends members the whole list instead of a diff.
    }
  }

  /** A presence-state update relayed from the user's object. */
  setState(userId: string, state: PresenceEntry["state"]): void {
    const entry = this.#users?.get(userId);
    if (entry !== undefined) entry.state = state;
  }
}
