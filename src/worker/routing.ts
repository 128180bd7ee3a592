/**
 * Which object of a room an upgrade goes to (docs/scaling.md). The orderer (the object named by the
 * room) unless this isolate has a recent map for the room; an object handed a user that is not its
 * own answers an internal redirect, which is followed here and never reaches the client.
 */
import { HttpError } from "../common/errors";
import { encodeHandoff, HANDOFF_HEADER, type Handoff } from "../room/handoff";
import { readRedirect, type ShardMap, shardName, shardOf } from "../room/shard-map";

/** How long a map learnt from a redirect is used; a stale one costs a redirect, never a wrong room. */
export const MAP_CACHE_MS = 5000;
const MAP_CACHE_MAX_ROOMS = 10_000;
/** Redirects followed for one upgrade: a map that changes under it twice is given up on. */
const MAX_HOPS = 3;

const maps = new Map<string, ShardMap & { until: number }>();

function cachedMap(room: string, now: number): ShardMap | undefined {
  const entry = maps.get(room);
  if (entry === undefined) return undefined;
  if (entry.until > now) return entry;
  maps.delete(room);
  return undefined;
}

function remember(room: string, map: ShardMap, now: number): void {
  const old = maps.get(room);
  if (old !== undefined && old.epoch > map.epoch && old.until > now) return;
  maps.delete(room);
  if (maps.size >= MAP_CACHE_MAX_ROOMS) {
    const oldest = maps.keys().next().value;
    if (oldest !== undefined) maps.delete(oldest);
  }
  if (map.n > 1) maps.set(room, { ...map, until: now + MAP_CACHE_MS });
}

/** Forgets every cached map (tests). */
export function clearShardMaps(): void {
  maps.clear();
}

/** Hands the admitted upgrade to the user's object of the room, following redirects. */
export async function connectToRoom(namespace: Env["ROOMS"], handoff: Handoff): Promise<Response> {
  const { room } = handoff;
  const now = Date.now();
  const map = cachedMap(room, now);
  let k = map === undefined ? 0 : shardOf(handoff.user.id, map.n);
  for (let hop = 0; hop < MAX_HOPS; hop++) {
    const stub = namespace.get(namespace.idFromName(shardName(room, k)));
    // A fresh request: none of the client's headers reach the object, so none can be forged.
    const response = await stub.fetch("https://room.internal/connect", {
      headers: { Upgrade: "websocket", [HANDOFF_HEADER]: encodeHandoff(handoff) },
    });
    const redirect = readRedirect(response);
    if (redirect === undefined) return response;
    remember(room, redirect.map, now);
    k = redirect.k;
  }
  throw new HttpError("room_busy", "the room is being resized; try again", { headers: { "Retry-After": "1" } });
}
