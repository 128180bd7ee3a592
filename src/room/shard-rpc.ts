/**
 * What the orderer and its shards say to each other over Durable Object RPC (docs/scaling.md).
 * Both ends are the same class (src/room/room.ts), so these are plain structured-clone values.
 */
import type { User } from "../protocol";
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
}

export interface DeliverResult {
  /** The last seq the shard delivered to its sockets. */
  last: number;
  counts: Counts;
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
