/**
 * A shard's stored cursor (its last delivered seq, src/room/shard-log.ts) is written at most about
 * once a second while deliveries flow, not once per delivery (a row write each, the largest part of
 * a sharded room's cost per message), and it is written before the shard can lose its memory with
 * its sockets kept: the pending write's timer keeps the object from hibernating.
 */
import { evictDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { SAVE_EVERY_MS } from "../../src/room/shard-log";
import { type Client, settle, until } from "../helpers";
import { expectExactlyOnce, objectOf, storedLast, twoShardRoom, waitForSeq } from "./support";

describe("a shard's stored cursor", () => {
  it("is written about once a second while messages flow, and holds the last seq once they stop", async () => {
    const { room, clients } = await twoShardRoom();
    const [ca, cb] = clients as [Client, Client, Client];
    ca.send({ type: "message", text: "first" });
    await waitForSeq(cb, 1);
    await until(async () => (await storedLast(room)) === 1, "seq 1 stored");
    // A stream: each message is its own delivery to shard 1 (sent one by one, each waited for).
    // After each, is the stored cursor already that delivery's seq? A write per delivery makes it so
    // every time; one a second, for the first delivery and then once per second of the stream (which
    // takes longer than a second on a slow machine, so no fixed count holds).
    let caughtUp = 0;
    const started = performance.now();
    for (let seq = 2; seq <= 11; seq++) {
      ca.send({ type: "message", text: `m${seq}` });
      await waitForSeq(cb, seq);
      if ((await storedLast(room)) === seq) caughtUp += 1;
    }
    const elapsed = performance.now() - started;
    expect(caughtUp).toBeLessThanOrEqual(1 + Math.ceil(elapsed / SAVE_EVERY_MS));
    // Once the stream stops, the pending write stores its last seq.
    await until(async () => (await storedLast(room)) === 11, "seq 11 stored", SAVE_EVERY_MS + 5000);
  });

  it("a shard that hibernates with its sockets continues from the written cursor: nothing repeated", async () => {
    const { room, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    for (let i = 1; i <= 5; i++) ca.send({ type: "message", text: `m${i}` });
    await waitForSeq(cc, 5);
    // Idle: the write is done (up to a second after the delivery; later on a loaded machine), the
    // object may hibernate (here: is evicted) with its sockets. Before the write it could not.
    await until(async () => (await storedLast(room)) === 5, "seq 5 stored", SAVE_EVERY_MS + 5000);
    await evictDurableObject(objectOf(room, 1));
    for (let i = 6; i <= 8; i++) ca.send({ type: "message", text: `m${i}` });
    await waitForSeq(cb, 8);
    await waitForSeq(cc, 8);
    await settle(200);
    expectExactlyOnce([ca, cb, cc], 1, 8);
  });
});
