/**
 * What the orderer and its shards say to each other over Durable Object RPC (docs/scaling.md).
 * Both ends are the same class (src/room/room.ts), so these are plain structured-clone values.
 */
import type { PresenceEntry, User } from "../protocol";
import type { MessageBody, Published } from "./messages";
import type { ShardMap } from "./shard-map";

/** How many sockets and users an object holds. */
export interface Counts {
  connections: number;
  users: number;
}

/** Room-wide occupancy, as the `occupancy` frame carries it. */
export interface Occupancy {
  online: number;
  connections: number;
}

/** Orderer → shard: consecutive frames from seq `from` on (maybe none), and what the orderer knows. */
export interface DeliverBatch {
  map: ShardMap;
  from: number;
  frames: string[];
  /** The orderer's latest durable seq: a shard behind it catches up from history. */
  latest: number;
  occupancy?: Occupancy;
  /** The version of this shard's roster report the orderer holds (0: none): another makes it report. */
  rosterOf?: number;
  /** The users of the room's other objects, when the shard does not hold this version yet. */
  roster?: RosterPush;
}

export interface DeliverResult {
  /** The last seq the shard delivered to its sockets. */
  last: number;
  counts: Counts;
  /** The shard's users, when the orderer's `rosterOf` is not its latest report. */
  report?: RosterReport;
  /** The version of the orderer's push the shard holds (0: none, e.g. after a wake). */
  rosterAt?: number;
}

/** JSON, as RPC types it (an `unknown` would not pass). */
type JsonValue = string | number | boolean | null | object;

/** A user as the objects of a room tell each other (and the HTTP API lists it): its state is JSON. */
export type RosterEntry = Omit<PresenceEntry, "state"> & { state?: Record<string, JsonValue> };

/** An object's own users, as it reports them to the orderer (src/room/roster-sync.ts); `null` above PRESENCE_ROSTER_MAX. */
export interface RosterReport {
  v: number;
  users: RosterEntry[] | null;
}

/** The orderer's list for one object: the users of every other object of the room. */
export interface RosterPush {
  v: number;
  users: RosterEntry[];
}

/** Shard → orderer: a member's room message, validated and rate-limited by its shard. */
export interface ForwardItem {
  user: User;
  body: MessageBody;
  /**
   * For a message without a client id: the shard's own idempotency key for it, longer than any
   * client id can be (so never one), with which the orderer dedupes a repeated or retried batch.
   */
  key?: string;
}

export type ForwardResult = Omit<Published, never> | { failed: true };

/** A range of the orderer's history: stored frames with seq `from`, `from + 1`, … */
export interface HistoryRange {
  from: number;
  frames: string[];
  latest: number;
}

/** The orderer's answer when a shard is attached: the map and the seq it starts after. */
export interface Attach {
  map: ShardMap;
  seq: number;
}
