/**
 * One room over several objects (docs/scaling.md), with SHARD_GROW_AT=3: a room grows to 2 objects
 * at its third socket and to 3 at its sixth. Every client must see every message exactly once, in
 * the same seq order, wherever it is connected.
 */
import { runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { MessageFrame } from "../../src/protocol";
import { encodeHandoff, HANDOFF_HEADER } from "../../src/room/handoff";
import { readRedirect } from "../../src/room/shard-map";
import { type Client, join, settle } from "../helpers";
import { expectExactlyOnce, objectOf, seqsOf, twoShardRoom, waitForSeq } from "./support";

describe("sharded rooms", () => {
  it("grows at the threshold and moves only the users of the new shard there (4307)", async () => {
    const { room, clients } = await twoShardRoom();
    const orderer = await objectOf(room, 0).shardStatus();
    const shard = await objectOf(room, 1).shardStatus();
    expect(orderer).toMatchObject({ role: "orderer", map: { n: 2, epoch: 1 }, counts: { connections: 1 } });
    expect(shard).toMatchObject({ role: "shard", k: 1, map: { n: 2, epoch: 1 }, counts: { connections: 2 } });
    expect(clients[0]?.closed).toBeUndefined();
  });

  it("delivers every message to every client exactly once, in one seq order, and acks after the message", async () => {
    const { clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    for (let i = 0; i < 4; i++) {
      ca.send({ type: "message", text: `a${i}`, id: `a${i}` });
      cb.send({ type: "message", text: `b${i}`, id: `b${i}` });
      cc.send({ type: "message", text: `c${i}`, id: `c${i}` });
    }
    for (const client of clients) await waitForSeq(client, 12);
    await settle(100);
    expectExactlyOnce(clients, 1, 12);
    const order = (c: Client) => c.all("message").map((m: MessageFrame) => `${m.seq}:${m.id}`);
    expect(order(cb)).toEqual(order(ca));
    expect(order(cc)).toEqual(order(ca));
    // A shard member's ack names the seq its message got, and comes after it.
    for (const [client, p] of [
      [cb, "b"],
      [cc, "c"],
    ] as const) {
      await client.waitFor((f) => f.filter((x) => x.type === "ack").length === 4, "4 acks");
      for (const ack of client.all("ack")) {
        const at = client.frames.indexOf(ack);
        const own = client.frames.findIndex((f) => f.type === "message" && f.id === ack.id);
        expect(ack.id.startsWith(p)).toBe(true);
        expect(own).toBeGreaterThanOrEqual(0);
        expect(own).toBeLessThan(at);
        expect((client.frames[own] as MessageFrame).seq).toBe(ack.seq);
      }
    }
  });

  it("acks a shard member's message only once it is durable at the orderer (history has it at the acked seq)", async () => {
    const { room, clients } = await twoShardRoom();
    const cb = clients[1] as Client;
    cb.send({ type: "message", text: "durable?", id: "d1" });
    const ack = await cb.next("ack");
    const page = await objectOf(room, 0).readMessages({ since: (ack.seq ?? 1) - 1, limit: 1 });
    expect(JSON.parse(page.frames[0] ?? "{}")).toMatchObject({ seq: ack.seq, id: "d1", text: "durable?" });
  });

  it("resumes on a shard from its buffer and from the orderer's history, without loss or repeat", async () => {
    const { room, users, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    for (let i = 0; i < 5; i++) ca.send({ type: "message", text: `m${i}` });
    await waitForSeq(cb, 5);
    cb.close();
    for (let i = 5; i < 8; i++) ca.send({ type: "message", text: `m${i}` });
    // Not a's seq 8 (a is on the orderer): shard 1's, whose delivery may come later; a resume
    // before it is welcomed at the shard's seq (5), then gets 6..8 as they come.
    await waitForSeq(cc, 8);
    const back = await join(room, { sub: users.b, since: 2 });
    expect(back.welcome).toMatchObject({ seq: 8, recovered: true });
    await waitForSeq(back.client, 8);
    expect(seqsOf(back.client)).toEqual([3, 4, 5, 6, 7, 8]);
  });

  it("redirects a user handed to the wrong object (a stale map), and the Worker follows it", async () => {
    const { room, users, clients } = await twoShardRoom();
    // Straight to shard 1 with a user of the orderer: an internal redirect, never a socket.
    const handoff = {
      room,
      user: { id: String(users.a), name: String(users.a) },
      role: "member" as const,
      exp: Date.now() + 60_000,
      ip: null,
      selectProtocol: false,
    };
    const response = await objectOf(room, 1).fetch("https://room.internal/connect", {
      headers: { Upgrade: "websocket", [HANDOFF_HEADER]: encodeHandoff(handoff) },
    });
    expect(readRedirect(response)).toEqual({ k: 0, map: { n: 2, epoch: 1 } });
    // Through the Worker, the same user is connected where it belongs.
    const again = await join(room, { sub: users.a });
    expect(again.welcome.type).toBe("welcome");
    expect((await objectOf(room, 0).shardStatus()).counts.connections).toBe(2);
    // And the room works as one for everyone, the redirected connection included.
    const everyone = [...clients, again.client];
    again.client.send({ type: "message", text: "via redirect", id: "v1" });
    (clients[1] as Client).send({ type: "message", text: "from a shard", id: "v2" });
    for (const c of everyone) await waitForSeq(c, 2);
    await settle(100);
    expectExactlyOnce(everyone, 1, 2);
  });

  it("skips a repeated delivery and fills a skipped one from history, once for all its sockets", async () => {
    const { room, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    for (let i = 0; i < 3; i++) ca.send({ type: "message", text: `m${i}` });
    await waitForSeq(cb, 3);
    const orderer = objectOf(room, 0);
    const page = await orderer.readMessages({ since: 0, limit: 3 });
    const shard = objectOf(room, 1);
    // Repeated: frames 2 and 3 again.
    const repeated = await shard.deliver({ map: { n: 2, epoch: 1 }, from: 2, frames: page.frames.slice(1), latest: 3 });
    expect(repeated.last).toBe(3);
    // Lost: the orderer's deliveries of 4..6 fail; the shard is handed only 6 and reads 4 and 5.
    await orderer.failNextDeliveries(1000);
    for (let i = 3; i < 6; i++) ca.send({ type: "message", text: `m${i}` });
    await waitForSeq(ca, 6);
    await settle(100);
    expect(seqsOf(cb)).toEqual([1, 2, 3]);
    const late = await orderer.readMessages({ since: 5, limit: 1 });
    const filled = await shard.deliver({ map: { n: 2, epoch: 1 }, from: 6, frames: late.frames, latest: 6 });
    expect(filled.last).toBe(6);
    await waitForSeq(cc, 6);
    // The orderer's retries now go through: all repeats, skipped.
    await orderer.failNextDeliveries(0);
    await settle(2500);
    expectExactlyOnce(clients, 1, 6);
  });

  it("retries a delivery that failed on the way: the shard's clients still see every message once", async () => {
    const { room, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    await objectOf(room, 0).failNextDeliveries(2);
    for (let i = 0; i < 5; i++) ca.send({ type: "message", text: `m${i}` });
    await waitForSeq(cb, 5);
    await waitForSeq(cc, 5);
    await settle(200);
    expectExactlyOnce(clients, 1, 5);
  });
});

describe("sharded rooms: batch frames", () => {
  it("delivers a commit's run to a batching connection on a shard as an array frame, each seq once", async () => {
    const { room, users } = await twoShardRoom();
    const batching = await join(room, { sub: `${users.b}`, batch: true });
    expect(batching.welcome.batch).toBe(true);
    await runInDurableObject(objectOf(room, 0), async (instance) => {
      const from = { id: "api", name: "API" };
      await Promise.all(["one", "two", "three", "four"].map((text) => instance.publish(room, from, { text })));
    });
    await waitForSeq(batching.client, 4);
    expect(seqsOf(batching.client)).toEqual([1, 2, 3, 4]);
    expect(batching.client.texts.some((t) => t.startsWith("[") && t.includes('"seq":4'))).toBe(true);
  });
});
