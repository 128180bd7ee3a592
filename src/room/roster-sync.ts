/**
 * The room's roster across a sharded room's objects (docs/scaling.md, "Presence"). Each shard
 * reports its own users to the orderer; the orderer tells each object the users of all the others,
 * which it keeps as its mirror (src/room/presence-mirror.ts). Lists, not events: a report or a push
 * that is lost, repeated or late is replaced by the next one, and each side says which version it
 * holds, so a lost one is sent again.
 *
 * - A shard reports with its counts (src/room/shard-role.ts `report`) when its users change, and in
 *   the answer to a delivery whose `rosterOf` is not the version it last made: a new instance (a
 *   reset, a wake) makes a new version, so the orderer learns at its first delivery that a reset
 *   shard's users are gone. No phantom outlives a delivery.
 * - The orderer pushes with deliveries (src/room/fanout.ts), to each shard whose `rosterAt` is not the
 *   current version: a shard that woke holds none, says so, and is sent the list again. It pushes
 *   only a complete list (a report from every object it delivers to: after its own wake it first asks
 *   every shard), and only while the room is at most PRESENCE_ROSTER_MAX users (above it members get
 *   counts, and the lists would be large for nothing).
 *
 * Presence states ride along but do not make a version: they change often (cursors) and travel on
 * their own (src/room/relay.ts); a list carries the state as it was, for users that are new to it.
 */
import type { PresenceEntry } from "../protocol";
import { MOVED_GRACE_MS } from "./presence-feed";
import { mergeRosters } from "./presence-mirror";
import type { RosterEntry, RosterPush, RosterReport } from "./shard-rpc";

/** Changes within this long go out as one push. */
export const ROSTER_PUSH_DELAY_MS = 50;

/**
 * A retired shard (the room shrank) is no longer delivered to once its last socket moved, but its
 * users linger there (a moved one MOVED_GRACE_MS at least) until their new object reported them:
 * its list is kept until it reports none, and at most this long (a retired shard that reset).
 */
export const RETIRED_KEEP_MS = MOVED_GRACE_MS + 2000;

/** A version newer than `last` and than any made before by an instance that started earlier. */
function nextVersion(last: number): number {
  return Math.max(last + 1, Date.now());
}

/** An object's side: the report of its own users, and the version of the others' it was told last. */
export class RosterReporter {
  #v = 0;
  /** A new instance has not reported yet. */
  #isDirty = true;
  /** The version of the orderer's push applied here (0: none since this instance started). */
  at = 0;

  /** `list`: this object's users with their states, `null` above PRESENCE_ROSTER_MAX. */
  constructor(readonly list: () => PresenceEntry[] | null) {}

  changed(): void {
    this.#isDirty = true;
  }

  /** A report to send: when changed, or when the orderer holds `held` (not the latest). */
  take(held?: number): RosterReport | undefined {
    if (this.#isDirty) {
      this.#v = nextVersion(this.#v);
      this.#isDirty = false;
    } else if (held === undefined || held === this.#v) return undefined;
    // States were parsed from JSON frames: they are JSON.
    return { v: this.#v, users: this.list() as RosterEntry[] | null };
  }
}

export interface RosterSyncParts {
  /** The orderer's own users with their states, `null` above the setting. */
  own(): PresenceEntry[] | null;
  /** The shards the orderer delivers to (retiring ones included). */
  shards(): number[];
  /** PRESENCE_ROSTER_MAX. */
  max: number;
  /** The orderer's own mirror: every shard's users. */
  apply(users: PresenceEntry[]): void;
  /** Sends every shard a delivery (which carries the push). */
  nudge(): void;
}

/** The orderer's side: every shard's last report, and the push each shard is due. */
export class RosterSync {
  readonly #reports = new Map<number, RosterReport>();
  /** Retired shards whose list is still kept (their users linger there), with the timer that drops it. */
  readonly #retired = new Map<number, ReturnType<typeof setTimeout>>();
  readonly #parts: RosterSyncParts;
  #v = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(parts: RosterSyncParts) {
    this.#parts = parts;
  }

  /** The version of shard `k`'s report held here (0: none). */
  heldOf(k: number): number {
    return this.#reports.get(k)?.v ?? 0;
  }

  /** A shard's report (maybe older than one held: ignored). */
  reported(k: number, report: RosterReport | undefined): void {
    const held = this.#reports.get(k);
    if (report === undefined || report.v <= (held?.v ?? 0)) return;
    if (this.#retired.has(k) && report.users?.length === 0) {
      this.#forget(k); // its last users settled there
      return;
    }
    this.#reports.set(k, report);
    // A new version of the same list (a shard that woke) changes nothing for anyone.
    if (held === undefined || JSON.stringify(held.users) !== JSON.stringify(report.users)) this.changed();
  }

  /**
   * A shard left the room (the orderer no longer delivers to it): its users stay listed while they
   * linger there (RETIRED_KEEP_MS at most), so that a moved user is seen in its new object first.
   */
  removed(k: number): void {
    if (this.#retired.has(k)) return;
    const held = this.#reports.get(k);
    if (held === undefined) return;
    if (held.users?.length === 0) {
      this.#reports.delete(k);
      this.changed();
      return;
    }
    this.#retired.set(
      k,
      setTimeout(() => this.#forget(k), RETIRED_KEEP_MS),
    );
  }

  #forget(k: number): void {
    const timer = this.#retired.get(k);
    if (timer !== undefined) clearTimeout(timer);
    this.#retired.delete(k);
    // Attached again meanwhile (the room grew back): its reports are current.
    if (this.#parts.shards().includes(k)) return;
    if (this.#reports.delete(k)) this.changed();
  }

  /**
   * Something in the roster changed: soon a new version, the orderer's own mirror, and a push to
   * every shard; nothing while the list is incomplete or above the setting (no delivery for it).
   */
  changed(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#parts.shards().length === 0 && this.#retired.size === 0) {
        // One object again: no other object's user, however many the orderer holds itself.
        this.#parts.apply([]);
        return;
      }
      const all = this.#lists(-1);
      if (all === undefined) return;
      this.#v = nextVersion(this.#v);
      this.#parts.apply(mergeRosters(all.slice(1)));
      this.#parts.nudge();
    }, ROSTER_PUSH_DELAY_MS);
  }

  /** What shard `k` is due when it holds version `at`: the users of every other object. */
  pushFor(k: number, at: number): RosterPush | undefined {
    if (at === this.#v || this.#v === 0) return undefined;
    const lists = this.#lists(k);
    return lists === undefined ? undefined : { v: this.#v, users: mergeRosters(lists) as RosterEntry[] };
  }

  /**
   * Every object's list but `except`'s, the orderer's first; `undefined` while one is missing (after
   * a wake), or the room is above the setting.
   */
  #lists(except: number): PresenceEntry[][] | undefined {
    const own = this.#parts.own();
    if (own === null) return undefined;
    const lists: PresenceEntry[][] = except === 0 ? [] : [own];
    let total = own.length;
    for (const k of new Set([...this.#parts.shards(), ...this.#retired.keys()])) {
      const users = this.#reports.get(k)?.users;
      if (users === undefined || users === null) return undefined;
      total += users.length;
      if (k !== except) lists.push(users);
    }
    return total > this.#parts.max ? undefined : lists;
  }
}
