/** Helpers for sharded rooms (SHARD_GROW_AT=3, test/shard/vitest.config.ts): which users land where, each object's status, message bookkeeping. */
import { env, runInDurableObject } from "cloudflare:test";
import { expect } from "vitest";
import type { MessageFrame, ServerFrame } from "../../src/protocol";
import { shardName, shardOf } from "../../src/room/shard-map";
import { type Client, join, type Received, uniqueRoom } from "../helpers";

/** The stub of object `k` of `room` (0: the orderer). */
export function objectOf(room: string, k: number) {
  return env.ROOMS.get(env.ROOMS.idFromName(shardName(room, k)));
}

/** The last seq shard `k` stored (what it continues from after it loses its memory, src/room/shard-log.ts). */
export function storedLast(room: string, k = 1): Promise<number> {
  return runInDurableObject(objectOf(room, k), (_instance, state) => {
    const rows = state.storage.sql
      .exec<{ value: string }>("SELECT value FROM shard_state WHERE key = 'last'")
      .toArray();
    return Number(rows[0]?.value ?? "0");
  });
}

/** The last seq object `k` of `room` delivered to its sockets. */
export async function lastDelivered(room: string, k: number): Promise<number> {
  return (await objectOf(room, k).shardStatus()).last;
}

/** `count` user ids that live in shard `k` of a room of `n` shards (and, with `alsoK`, in shard `alsoK` of `alsoN`). */
export function usersIn(k: number, n: number, count: number, prefix = "u", also?: { k: number; n: number }): string[] {
  const out: string[] = [];
  for (let i = 0; out.length < count && i < 100_000; i++) {
    const id = `${prefix}${i}`;
    if (shardOf(id, n) === k && (also === undefined || shardOf(id, also.n) === also.k)) out.push(id);
  }
  return out;
}

/** The room messages a client received, in arrival order. */
export function seqsOf(client: Client): number[] {
  return client.all("message").flatMap((m: MessageFrame) => (m.seq === undefined ? [] : [m.seq]));
}

/** Every client holds exactly seqs `from`..`to` (each once, in order) among what it received after `from - 1`. */
export function expectExactlyOnce(clients: Client[], from: number, to: number): void {
  const want = Array.from({ length: to - from + 1 }, (_, i) => from + i);
  for (const client of clients) expect(seqsOf(client).filter((s) => s >= from)).toEqual(want);
}

export function waitForSeq(client: Client, seq: number, timeoutMs = 5000): Promise<void> {
  return client.waitFor((frames) => frames.some((f) => f.type === "message" && f.seq === seq), `seq ${seq}`, timeoutMs);
}

/** A room grown to 2 objects: `a` on the orderer, `b` and `c` moved to shard 1 and back in. */
export async function twoShardRoom() {
  const room = uniqueRoom("shard");
  const [a] = usersIn(0, 2, 1, "a");
  const [b, c] = usersIn(1, 2, 2, "b");
  const ca = (await join(room, { sub: a })).client;
  const cb = (await join(room, { sub: b })).client;
  const cc = (await join(room, { sub: c })).client;
  // The third socket grows the room; b and c are moved with 4307.
  expect((await cb.nextClose()).code).toBe(4307);
  expect((await cc.nextClose()).code).toBe(4307);
  const nb = await join(room, { sub: b, since: 0 });
  const nc = await join(room, { sub: c, since: 0 });
  return { room, users: { a, b, c }, clients: [ca, nb.client, nc.client] as Client[], welcomes: [nb, nc] };
}

/** What a client received, as short labels, heartbeats, signals and occupancy left out. */
export function labels(client: Client): string[] {
  return client.frames.flatMap((f: Received) => {
    const frame = f as ServerFrame & Record<string, unknown>;
    switch (frame.type) {
      case "message":
        return [frame.seq === undefined ? `dm:${frame.text}` : `msg:${frame.seq}`];
      case "ack":
        return [`ack:${frame.id}`];
      case "error":
        return [`error:${frame.code}`];
      case "pong":
        return ["pong"];
      case "history":
        return ["history"];
      default:
        return [];
    }
  });
}

/** A `ping` the runtime does not answer by itself (not byte for byte the auto-response's). */
export const SLOW_PING = '{ "type": "ping" }';
