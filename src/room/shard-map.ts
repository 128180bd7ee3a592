/**
 * Which object of a room a user belongs to (docs/scaling.md): shard names, the jump consistent hash
 * of the user id, and the internal redirect an object answers when handed someone else's user.
 */
import * as v from "valibot";

/** How many shards a room has and which change of that it is. `n` = 1: an unsharded room. */
export interface ShardMap {
  n: number;
  epoch: number;
}

export const UNSHARDED: ShardMap = { n: 1, epoch: 0 };

export const ShardMapSchema = v.object({
  n: v.pipe(v.number(), v.safeInteger(), v.minValue(1)),
  epoch: v.pipe(v.number(), v.safeInteger(), v.minValue(0)),
});

/** The separator no room id can contain (`^[A-Za-z0-9_-]{1,64}$`): a client cannot name a shard. */
const SEPARATOR = "~s";

/** The object name of shard `k` of `room`; shard 0 is the orderer, named by the room itself. */
export function shardName(room: string, k: number): string {
  return k === 0 ? room : `${room}${SEPARATOR}${k}`;
}

/** The room and shard index an object name stands for. */
export function parseShardName(name: string): { room: string; k: number } {
  const at = name.lastIndexOf(SEPARATOR);
  if (at < 0) return { room: name, k: 0 };
  const k = Number(name.slice(at + SEPARATOR.length));
  return Number.isSafeInteger(k) && k > 0 ? { room: name.slice(0, at), k } : { room: name, k: 0 };
}

/** FNV-1a, 64 bits, of the UTF-16 code units of `s`. */
function hash64(s: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (let i = 0; i < s.length; i++) {
    h ^= BigInt(s.charCodeAt(i));
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h;
}

/**
 * Lamping and Veach's jump consistent hash: a bucket in [0, n) for `key`. Going from n to n+1
 * buckets moves exactly the keys that land in the new bucket, about 1/(n+1) of them.
 */
export function jumpHash(key: bigint, n: number): number {
  let b = -1;
  let j = 0;
  let k = key;
  while (j < n) {
    b = j;
    k = (k * 2862933555777941757n + 1n) & 0xffffffffffffffffn;
    j = Math.floor(((b + 1) * 2 ** 31) / (Number(k >> 33n) + 1));
  }
  return b;
}

/** The shard of `userId` in a room of `n` shards. */
export function shardOf(userId: string, n: number): number {
  return n <= 1 ? 0 : jumpHash(hash64(userId), n);
}

/** The status of an internal redirect: never shown to a client (the Worker follows it). */
export const REDIRECT_STATUS = 421;
export const REDIRECT_HEADER = "X-Edge-Rooms-Shard";

/** "Ask shard k instead; the map is (n, epoch)." */
export function redirectResponse(k: number, map: ShardMap): Response {
  return new Response(null, { status: REDIRECT_STATUS, headers: { [REDIRECT_HEADER]: `${k};${map.n};${map.epoch}` } });
}

/** The redirect a response carries, if it is one. */
export function readRedirect(response: Response): { k: number; map: ShardMap } | undefined {
  if (response.status !== REDIRECT_STATUS) return undefined;
  const parts = (response.headers.get(REDIRECT_HEADER) ?? "").split(";").map(Number);
  const [k, n, epoch] = parts;
  if (parts.length !== 3 || k === undefined || n === undefined || epoch === undefined) return undefined;
  if (!parts.every((p) => Number.isSafeInteger(p) && p >= 0) || n < 1 || k >= n) return undefined;
  return { k, map: { n, epoch } };
}
