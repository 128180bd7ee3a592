/**
 * A shard's stored cursor (its last delivered seq, src/room/shard-log.ts) is written at most about
 * once a second while deliveries flow, not once per delivery (a row write each, the largest part of
 * a sharded room's cost per message), and it is written before the shard can lose its memory with
 * its sockets kept: the pending write's timer keeps the object from hibernating.
 */
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { SAVE_EVERY_MS } from "../../src/room/shard-log";
import { type Client, settle } from "../helpers";
import { expectExactlyOnce, objectOf, twoShardRoom, waitForSeq } from "./support";

/** The last seq shard 1 stored (what it continues from after it loses its memory). */
async function storedLast(room: string): Promise<number> {
  return runInDurableObject(objectOf(room, 1), (_instance, state) => {
    const rows = state.storage.sql
      .exec<{ value: string }>("SELECT value FROM shard_state WHERE key = 'last'")
      .toArray();
    return Number(rows[0]?.value ?? "0");
  });
}

describe("a shard's stored cursor", () => {
  it("is written about once a second while messages flow, and holds the last seq once they stop", async () => {
    const { room, clients } = await twoShardRoom();
    const [ca, cb] = clients as [Client, Client, Client];
    ca.send({ type: "message", text: "first" });
    await waitForSeq(cb, 1);
    await settle(SAVE_EVERY_MS + 200);
    expect(await storedLast(room)).toBe(1);
    // A stream: each message is its own delivery to shard 1 (sent one by one, each waited for).
    for (let seq = 2; seq <= 11; seq++) {
      ca.send({ type: "message", text: `m${seq}` });
      await waitForSeq(cb, seq);
    }
    // Written for the first delivery of the stream at most: the rest waits for the next second.
    expect(await storedLast(room)).toBeLessThan(11);
    await settle(SAVE_EVERY_MS + 200);
    expect(await storedLast(room)).toBe(11);
  });

  it("a shard that hibernates with its sockets continues from the written cursor: nothing repeated", async () => {
    const { room, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    for (let i = 1; i <= 5; i++) ca.send({ type: "message", text: `m${i}` });
    await waitForSeq(cc, 5);
    // Idle: the write is done, the object may hibernate (here: is evicted) with its sockets.
    await settle(SAVE_EVERY_MS + 200);
    await evictDurableObject(objectOf(room, 1));
    for (let i = 6; i <= 8; i++) ca.send({ type: "message", text: `m${i}` });
    await waitForSeq(cb, 8);
    await waitForSeq(cc, 8);
    await settle(200);
    expectExactlyOnce([ca, cb, cc], 1, 8);
  });
});
