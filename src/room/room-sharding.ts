/**
 * A room object's part in a sharded room (docs/scaling.md): which role it plays (orderer or shard
 * k, from its name), the wiring of that role into the room's parts, and the bodies of the RPC
 * methods the objects of one room call on each other. In an unsharded room it does nothing.
 */
import type { Config } from "../common/config";
import type { OccupancyFrame, PresenceEntry } from "../protocol";
import { tagForUser } from "./connection";
import type { Connections } from "./connections";
import type { Ephemeral } from "./ephemeral";
import type { History } from "./history";
import type { Messages } from "./messages";
import { Mover } from "./mover";
import { objectName } from "./object-name";
import { Orderer, type OrdererParts } from "./orderer";
import { Relay, type RelayItem, type RelayPort } from "./relay";
import { ReplyOrder } from "./reply-order";
import { RosterReporter } from "./roster-sync";
import { ShardLog } from "./shard-log";
import { parseShardName, type ShardMap, shardName, shardOf, UNSHARDED } from "./shard-map";
import { type OrdererPort, ShardRole } from "./shard-role";
import type { Counts, ForwardItem, ForwardResult, HistoryRange, RosterReport } from "./shard-rpc";
import { TestGate } from "./test-gate";

export interface ShardingParts {
  connections: () => Connections;
  /** The room's presence count, and its users. */
  online: () => number;
  history: History;
  /** The room-wide counts changed (the roster mode may switch: src/room/roster-mode.ts). */
  occupancyChanged?: () => void;
  /**
   * This object's own users with their states (`null` when more than `max`), and where the other
   * objects' go (src/room/roster-sync.ts).
   */
  roster?: { own(max: number): PresenceEntry[] | null; apply(users: PresenceEntry[]): void };
}

/** One object's status in its room, for tests and operators. */
export interface ShardStatus {
  role: "orderer" | "shard";
  k: number;
  map: ShardMap;
  last: number;
  counts: Counts;
  reads: number;
}

export class Sharding {
  readonly room: string;
  readonly k: number;
  readonly orderer: Orderer | undefined;
  readonly shard: ShardRole | undefined;
  /** Signals, presence updates and binary frames to the room's other objects (src/room/relay.ts). */
  readonly relay: Relay;
  /** Test hook: direct messages and signals from other objects wait here while a test holds it. */
  readonly directGate = new TestGate();
  readonly #env: Env;
  readonly #parts: ShardingParts;
  readonly #shardMax: number;

  constructor(ctx: DurableObjectState, env: Env, config: Config | undefined, parts: ShardingParts) {
    const { room, k } = parseShardName(objectName(ctx));
    this.room = room;
    this.k = k;
    this.#env = env;
    this.#parts = parts;
    this.#shardMax = config?.shardMax ?? 1;
    const shardLog = new ShardLog(ctx.storage.sql);
    const mover = new Mover(k, config?.shardMovesPerSecond ?? 1, parts.connections);
    // Above the setting, members get counts only: no list to send (src/room/roster-mode.ts).
    const rosterMax = config?.presenceRosterMax ?? 0;
    const own = () => parts.roster?.own(rosterMax) ?? null;
    const apply = (users: PresenceEntry[]) => parts.roster?.apply(users);
    if (k > 0) {
      this.shard = new ShardRole(k, shardLog, {
        orderer: () => this.stubOf(0) as unknown as OrdererPort,
        connections: parts.connections,
        counts: () => this.counts(),
        onMap: (map) => mover.start(map),
        onOccupancy: () => parts.occupancyChanged?.(),
        roster: new RosterReporter(own),
        onRoster: apply,
      });
    } else {
      const settings = {
        shardMax: config?.shardMax ?? 1,
        shardGrowAt: config?.shardGrowAt ?? 1,
        shardShrinkAfterMs: config?.shardShrinkAfterMs ?? 0,
      };
      this.orderer = new Orderer(shardLog, settings, {
        port: (i) => this.stubOf(i) as unknown as ReturnType<OrdererParts["port"]>,
        latest: () => parts.history.latestSeq,
        own: () => this.counts(),
        onMap: (map) => mover.start(map),
        broadcast: (frame) => {
          parts.connections().broadcast(frame);
          parts.occupancyChanged?.();
        },
        roster: { own, apply, max: rosterMax },
      });
    }
    this.relay = new Relay(
      k,
      () => this.map,
      (i) => this.stubOf(i) as unknown as RelayPort,
    );
    // A wake in the middle of moving sockets (the mover's timer was in memory): carry on.
    if (this.map.n > 1) mover.start(this.map);
  }

  get map(): ShardMap {
    return (this.shard ? this.shard.log.map : this.orderer?.map) ?? UNSHARDED;
  }

  stubOf(k: number) {
    return this.#env.ROOMS.get(this.#env.ROOMS.idFromName(shardName(this.room, k)));
  }

  /** The room-wide counts while the room is spread over several objects; `undefined` in one object. */
  occupancy(): OccupancyFrame | undefined {
    if (this.map.n <= 1 && this.shard === undefined) return undefined;
    const occupancy = this.shard ? this.shard.reports.occupancy : this.orderer?.occupancy();
    return occupancy === undefined ? undefined : { type: "occupancy", ...occupancy };
  }

  counts(): Counts {
    return { connections: this.#parts.connections().liveCount(), users: this.#parts.online() };
  }

  /**
   * Room messages from a shard go to the orderer; DMs to a user elsewhere, to its object. Answers
   * keep each connection's order with a chain per connection (src/room/reply-order.ts): always on a
   * shard, and on the orderer while the room is sharded or a chain is still owed.
   */
  wire(messages: Messages): void {
    const shard = this.shard;
    if (shard) {
      messages.forward = (conn, frame) => shard.forward(conn, frame);
      messages.order = () => shard.order;
    } else {
      const order = new ReplyOrder();
      messages.order = () => (this.map.n > 1 || order.size > 0 ? order : undefined);
    }
    messages.relayDirect = (to, text) => {
      const n = this.map.n;
      const at = shardOf(to, n);
      // What the sender saw before it: the recipient's object delivers that much first.
      const seen = shard ? shard.log.latestSeq : this.#parts.history.latestSeq;
      return n <= 1 || at === this.k ? undefined : this.stubOf(at).directIn(to, text, seen);
    };
  }

  /** Signals and presence updates said here go on to the room's other objects; a signal to a user elsewhere, to its object. */
  wireEphemeral(ephemeral: Ephemeral): void {
    const out = (item: RelayItem) => this.relay.out(item);
    ephemeral.signals.relay = out;
    ephemeral.states.relay = out;
    ephemeral.signals.relayDirect = (to, text) => {
      const n = this.map.n;
      const at = shardOf(to, n);
      return n <= 1 || at === this.k ? undefined : this.stubOf(at).directIn(to, text);
    };
  }

  /** Items relayed from object `from`: to this object's sockets (`apply`), and from the orderer on to every other shard. */
  relayIn(from: number, items: RelayItem[], apply: (items: RelayItem[]) => void): void {
    apply(items);
    if (this.orderer) this.relay.onward(from, items);
  }

  /** The object that should take `userId` instead of this one, if any. */
  route(userId: string): number | undefined {
    return this.shard ? this.shard.route(userId) : this.orderer?.route(userId);
  }

  /** The room's users for a presence webhook given this object's `local` count; a shard does not know it. */
  roomOnline(local: number): number | undefined {
    if (this.shard) return undefined;
    return this.orderer && this.map.n > 1 ? this.orderer.totals().users : local;
  }

  /** A connection came or went: the orderer's occupancy and growth, or a shard's report. */
  countsChanged(): void {
    // A room that cannot grow and never did has nobody to tell: no count on its connect path.
    if (this.orderer && this.#shardMax <= 1 && this.map.n <= 1) return;
    this.orderer?.reported(0, this.counts());
    this.shard?.reports.report();
  }

  /** This object's own users came, went or changed: the orderer pushes the room's, a shard reports. */
  rosterChanged(): void {
    const orderer = this.orderer;
    if (orderer) {
      if (orderer.fanout.size > 0) orderer.roster.changed();
      return;
    }
    this.shard?.reports.rosterChanged();
  }

  /** Orderer: shard `k`'s report (counts, maybe its users and the version of the room's it holds). */
  heard(k: number, counts: Counts, roster?: RosterReport, rosterAt?: number): void {
    this.requireOrderer().heard(k, counts, roster, rosterAt);
  }

  requireOrderer(): Orderer {
    if (!this.orderer) throw new Error("not a room's orderer");
    return this.orderer;
  }

  requireShard(): ShardRole {
    if (!this.shard) throw new Error("not a shard");
    return this.shard;
  }

  /** Orderer: members' room messages forwarded by shard `k`, each through the room's own path. */
  submitBatch(messages: Messages, k: number, items: ForwardItem[], counts: Counts): Promise<ForwardResult[]> {
    this.requireOrderer().reported(k, counts);
    const now = Date.now();
    return Promise.all(
      items.map((item) =>
        messages.publish(this.room, item.user, item.body, now, item.key).then(
          (published): ForwardResult => published,
          (): ForwardResult => ({ failed: true }),
        ),
      ),
    );
  }

  readSince(since: number, limit: number): HistoryRange {
    this.requireOrderer();
    const history = this.#parts.history;
    return { ...history.range(since, limit), latest: history.latestSeq };
  }

  /**
   * Sends `text` to `to`'s connections in this object, once it delivered `after` (the last seq its
   * sender's object had delivered: the DM never overtakes a room message sent before it); how many got it.
   */
  async directIn(to: string, text: string, after = 0): Promise<number> {
    await this.directGate.passed();
    await this.shard?.delivered(after);
    const connections = this.#parts.connections();
    const recipients = connections.live(tagForUser(to));
    for (const conn of recipients) connections.send(conn, text);
    return recipients.length;
  }

  /** Orderer: kicks `userId` from its shard too; how many connections were closed there. */
  async kickElsewhere(userId: string): Promise<number> {
    const k = this.orderer?.route(userId);
    return k === undefined ? 0 : this.stubOf(k).kick(userId);
  }

  /**
   * Orderer: a page of the room's users over all its objects, by user id, after `after`; `next` is
   * the id to ask after for the next page. Each object answers with at most `limit` + 1 of its own.
   */
  async roster<T extends PresenceEntry>(
    after: string | undefined,
    limit: number,
    local: (after: string | undefined, limit: number) => T[],
  ): Promise<{ users: T[]; next?: string }> {
    const n = this.requireOrderer().map.n;
    // One more than a page from each: whether there is more is then known without another call.
    const others = Array.from({ length: n - 1 }, (_, i) => this.stubOf(i + 1).localRoster(after, limit + 1));
    const pages = [local(after, limit + 1), ...((await Promise.all(others)) as T[][])];
    const merged = pages.flat().sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const users = merged.slice(0, limit);
    const last = users.at(-1);
    return merged.length > limit && last !== undefined ? { users, next: last.id } : { users };
  }

  status(): ShardStatus {
    const shard = this.shard;
    return {
      role: shard ? "shard" : "orderer",
      k: this.k,
      map: this.map,
      last: shard ? shard.log.latestSeq : this.#parts.history.latestSeq,
      counts: this.counts(),
      reads: shard?.reads ?? 0,
    };
  }
}
