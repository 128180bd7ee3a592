/**
 * What the HTTP API's room info says (`GET /api/rooms/:room`): the latest seq, the connections and
 * the users, over every object of a sharded room (the first INFO_USERS_MAX by id; `usersNext` pages
 * on through `/users`).
 */
import type { RoomParts } from "./room-parts";
import type { RosterEntry } from "./shard-rpc";

export interface RoomInfo {
  seq: number;
  connections: number;
  users: RosterEntry[];
  /** How many objects the room is spread over; only when more than one (docs/scaling.md). */
  shards?: number;
  /** Sharded, with more than INFO_USERS_MAX users: the `after` of `/users` for the rest. */
  usersNext?: string;
}

/** The most users `info` lists in a sharded room (the HTTP API's roster pages the rest). */
export const INFO_USERS_MAX = 1000;

type Roster = (after: string | undefined, limit: number) => RoomInfo["users"];

export async function roomInfo(parts: RoomParts, local: Roster): Promise<RoomInfo> {
  const { sharding, history, connections, ephemeral, presence } = parts;
  const n = sharding.map.n;
  const orderer = sharding.orderer;
  const wide = n > 1 && orderer ? await sharding.roster(undefined, INFO_USERS_MAX, local) : undefined;
  return {
    seq: history.latestSeq,
    connections: n > 1 && orderer ? orderer.totals().connections : connections.liveCount(),
    // States were parsed from JSON: they are JSON.
    users: wide?.users ?? (ephemeral.states.decorate(presence.list()) as RoomInfo["users"]),
    ...(wide?.next === undefined ? {} : { usersNext: wide.next }),
    ...(n > 1 ? { shards: n } : {}),
  };
}

/** This object's own users after `after`, by id, at most `limit`. */
export function localRoster(parts: RoomParts, after: string | undefined, limit: number): RoomInfo["users"] {
  const users = parts.ephemeral.states.decorate(parts.presence.list()) as RoomInfo["users"];
  return users
    .filter((u) => u.connections > 0 && (after === undefined || u.id > after))
    .sort((a, b) => (a.id < b.id ? -1 : 1))
    .slice(0, limit);
}
