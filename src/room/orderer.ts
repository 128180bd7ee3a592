/**
 * The orderer role (docs/scaling.md): the object named by the room keeps the room's shard map and
 * occupancy, delivers every commit to its shards (src/room/fanout.ts), redirects users that belong
 * to a shard, and grows the room when its sockets reach the threshold. Unsharded, it is idle: the
 * room is one object, exactly as before.
 */
import { describeError, log } from "../common/log";
import type { PresenceEntry } from "../protocol";
import { Fanout, type ShardPort } from "./fanout";
import { RosterSync } from "./roster-sync";
import type { ShardLog } from "./shard-log";
import { type ShardMap, shardOf, UNSHARDED } from "./shard-map";
import type { Attach, Counts, Occupancy, RosterReport } from "./shard-rpc";

/** Occupancy frames go out at most this often. */
export const OCCUPANCY_INTERVAL_MS = 1000;

export interface OrdererSettings {
  shardMax: number;
  shardGrowAt: number;
  shardShrinkAfterMs: number;
}

export interface OrdererParts {
  /** Shard k's stub. */
  port(k: number): ShardPort & { attach(attach: Attach): Promise<void> };
  latest(): number;
  own(): Counts;
  /** The map changed: move whoever is no longer this object's. */
  onMap(map: ShardMap): void;
  /** Sends a frame to this object's own sockets. */
  broadcast(frame: string): void;
  /** The orderer's own users (`null` above PRESENCE_ROSTER_MAX), and its mirror of the shards' (src/room/roster-sync.ts). */
  roster: { own(): PresenceEntry[] | null; apply(users: PresenceEntry[]): void; max: number };
}

export class Orderer {
  readonly fanout: Fanout;
  /** The room's users across its objects. */
  readonly roster: RosterSync;
  readonly #store: ShardLog;
  readonly #settings: OrdererSettings;
  readonly #parts: OrdererParts;
  readonly #counts = new Map<number, Counts>();
  #isGrowing = false;
  /** The shard being attached: a link that must stay, even if a retired shard of that index empties. */
  #attaching: number | undefined;
  #occupancy = "";
  #occupancySentAt = 0;
  #occupancyTimer: ReturnType<typeof setTimeout> | undefined;
  /** Set while the room is small enough to shrink: the check that will shrink it, if it stays so. */
  #shrinkTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(store: ShardLog, settings: OrdererSettings, parts: OrdererParts) {
    this.#store = store;
    this.#settings = settings;
    this.#parts = parts;
    this.fanout = new Fanout((k) => parts.port(k), {
      map: () => this.map,
      latest: () => parts.latest(),
      occupancy: () => this.occupancy(),
      // The fanout keeps the version of the push the shard holds itself: no `rosterAt` here.
      reported: (k, result) => this.heard(k, result.counts, result.report),
      rosterOf: (k) => this.roster.heldOf(k),
      rosterFor: (k, at) => this.roster.pushFor(k, at),
    });
    this.roster = new RosterSync({
      ...parts.roster,
      shards: () => this.fanout.shards(),
      nudge: () => this.fanout.nudge(),
    });
    const map = this.map;
    if (map.n > 1) {
      // A wake (or a reset): the cursors were in memory. Every shard is told the latest seq at once,
      // and one behind reads what it missed from history.
      for (let k = 1; k < map.n; k++) this.fanout.add(k, parts.latest());
      setTimeout(() => this.fanout.nudge(), 0);
    }
  }

  get map(): ShardMap {
    return this.#store.map ?? UNSHARDED;
  }

  /** `undefined` when `userId` is the orderer's own (always, unsharded); else its shard. */
  route(userId: string): number | undefined {
    const k = shardOf(userId, this.map.n);
    return k === 0 ? undefined : k;
  }

  /** A shard's report: its counts, maybe its users, and the version of the room's users it holds. */
  heard(k: number, counts: Counts, report?: RosterReport, rosterAt?: number): void {
    this.roster.reported(k, report);
    if (rosterAt !== undefined) this.fanout.heard(k, rosterAt);
    this.reported(k, counts);
  }

  /** A shard's counts, or the orderer's own changed (`k` = 0). */
  reported(k: number, counts: Counts): void {
    if (k > 0) this.#counts.set(k, counts);
    if (k >= this.map.n && counts.connections === 0 && k !== this.#attaching) {
      // A retired shard (the room shrank) whose last socket moved: nothing more to deliver there.
      this.fanout.remove(k);
      this.#counts.delete(k);
      this.roster.removed(k);
    }
    this.#occupancyChanged();
    this.#maybeShrink();
    this.#maybeGrow();
  }

  /**
   * Hysteresis: n → n−1 only once the room has held at most (n−1) × SHARD_GROW_AT ÷ 2 sockets for
   * SHARD_SHRINK_AFTER_MS, half the level that grows it again: a room near a threshold never flaps.
   */
  #isSmallEnough(): boolean {
    const n = this.map.n;
    return n > 1 && this.totals().connections <= ((n - 1) * this.#settings.shardGrowAt) / 2;
  }

  #maybeShrink(): void {
    if (!this.#isSmallEnough()) {
      if (this.#shrinkTimer !== undefined) clearTimeout(this.#shrinkTimer);
      this.#shrinkTimer = undefined;
      return;
    }
    if (this.#shrinkTimer !== undefined || this.#isGrowing) return;
    this.#shrinkTimer = setTimeout(() => {
      this.#shrinkTimer = undefined;
      if (this.#isGrowing || !this.#isSmallEnough()) return;
      const from = this.map;
      const to: ShardMap = { n: from.n - 1, epoch: from.epoch + 1 };
      // The retired shard keeps its link until it reports no socket: its members still get every
      // frame while they are moved (4307) to the objects they now belong to.
      this.#store.setMap(to);
      log("info", "shard_shrunk", { n: to.n, epoch: to.epoch });
      this.fanout.nudge();
      this.#parts.onMap(to);
    }, this.#settings.shardShrinkAfterMs);
  }

  /** Room-wide counts: the orderer's own and what each shard last reported. */
  totals(): Counts {
    const own = this.#parts.own();
    let { connections, users } = own;
    for (const [k, c] of this.#counts) {
      if (k >= this.map.n) continue;
      connections += c.connections;
      users += c.users;
    }
    return { connections, users };
  }

  /** Sent with deliveries in a sharded room only: a small room's frames are as before. */
  occupancy(): Occupancy | undefined {
    if (this.map.n <= 1) return undefined;
    const { connections, users } = this.totals();
    return { online: users, connections };
  }

  #occupancyChanged(): void {
    const occupancy = this.occupancy();
    if (occupancy === undefined || this.#occupancyTimer !== undefined) return;
    const frame = JSON.stringify({ type: "occupancy", ...occupancy });
    if (frame === this.#occupancy) return;
    const wait = this.#occupancySentAt + OCCUPANCY_INTERVAL_MS - Date.now();
    this.#occupancyTimer = setTimeout(
      () => {
        this.#occupancyTimer = undefined;
        const now = this.occupancy();
        if (now === undefined) return;
        const text = JSON.stringify({ type: "occupancy", ...now });
        if (text === this.#occupancy) return;
        this.#occupancy = text;
        this.#occupancySentAt = Date.now();
        this.#parts.broadcast(text);
        this.fanout.nudge();
      },
      Math.max(0, wait),
    );
  }

  #maybeGrow(): void {
    const { shardMax, shardGrowAt } = this.#settings;
    const map = this.map;
    if (this.#isGrowing || this.#shrinkTimer !== undefined || map.n >= shardMax) return;
    if (this.totals().connections < map.n * shardGrowAt) return;
    this.#isGrowing = true;
    this.#grow(map)
      .catch((error: unknown) => log("error", "shard_grow_failed", { n: map.n + 1, ...describeError(error) }))
      .finally(() => {
        this.#isGrowing = false;
      });
  }

  /** n → n+1: attach the new shard at the latest seq, then switch the map and tell everyone. */
  async #grow(from: ShardMap): Promise<void> {
    const to: ShardMap = { n: from.n + 1, epoch: from.epoch + 1 };
    const k = from.n;
    const seq = this.#parts.latest();
    // Frames committed while it is being attached queue for it from `seq` on. Right after a shrink
    // the retired shard k may still be moving its members out: its link stays as it is, attach or not.
    const isNew = this.fanout.add(k, seq, false);
    this.#attaching = k;
    try {
      await this.#parts.port(k).attach({ map: to, seq });
    } catch (error) {
      if (isNew) this.fanout.remove(k);
      throw error;
    } finally {
      this.#attaching = undefined;
    }
    this.#store.setMap(to);
    log("info", "shard_grown", { n: to.n, epoch: to.epoch, seq });
    this.fanout.ready(k);
    this.fanout.nudge();
    this.#parts.onMap(to);
  }
}
