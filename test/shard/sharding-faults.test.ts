/**
 * Faults in a room spread over several objects (docs/scaling.md): memory loss, resets that drop
 * sockets, a gap older than history, and splits and shrinks while it is in use. Every client must
 * still see every message exactly once, in seq order.
 */
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { type Client, join, settle, until } from "../helpers";
import {
  expectExactlyOnce,
  lastDelivered,
  objectOf,
  seqsOf,
  storedLast,
  twoShardRoom,
  usersIn,
  waitForSeq,
} from "./support";

describe("sharded rooms: resets and splits", () => {
  it("a shard that loses its memory continues from its stored seq; a reconnect storm reads history once", async () => {
    const { room, users, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    for (let i = 0; i < 4; i++) ca.send({ type: "message", text: `m${i}` });
    await waitForSeq(cc, 4);
    cb.close();
    cc.close();
    // The cursor is written up to a second after a delivery: lost with the memory before then, and
    // the shard would read the gap when 5 comes (the storm's read and that one, in either order).
    await until(async () => (await storedLast(room)) === 4, "shard 1 to store seq 4");
    await evictDurableObject(objectOf(room, 1));
    for (let i = 4; i < 6; i++) ca.send({ type: "message", text: `m${i}` });
    await waitForSeq(ca, 6);
    // The orderer's delivery of 5 and 6 wakes the shard, which continues from its stored 4, reading
    // nothing; wait for it, or the storm may come first and be welcomed at seq 4.
    await until(async () => (await lastDelivered(room, 1)) === 6, "shard 1 to deliver seq 6");
    expect((await objectOf(room, 1).shardStatus()).reads).toBe(0);
    // Both resume from seq 1 at once: the shard's buffer went with its memory.
    const [nb, nc] = await Promise.all([
      join(room, { sub: users.b, since: 1 }),
      join(room, { sub: users.c, since: 1 }),
    ]);
    for (const r of [nb, nc]) {
      expect(r.welcome).toMatchObject({ seq: 6, recovered: true });
      await waitForSeq(r.client, 6);
      expect(seqsOf(r.client)).toEqual([2, 3, 4, 5, 6]);
    }
    expect((await objectOf(room, 1).shardStatus()).reads).toBe(1);
  });

  it("an orderer that loses its memory still delivers to its shards, and their members' sends still go through", async () => {
    const { room, clients } = await twoShardRoom();
    const [, cb, cc] = clients as [Client, Client, Client];
    cb.send({ type: "message", text: "before", id: "x1" });
    await waitForSeq(cc, 1);
    await evictDurableObject(objectOf(room, 0));
    cb.send({ type: "message", text: "after", id: "x2" });
    cc.send({ type: "message", text: "after too", id: "y1" });
    await waitForSeq(cb, 3);
    await waitForSeq(cc, 3);
    await settle(200);
    expectExactlyOnce([cb, cc], 1, 3);
  });

  it("splits again while messages flow: every client, moved or not, ends with every seq exactly once", async () => {
    const { room, clients } = await twoShardRoom();
    // Users that stay where they are at n = 3, and two that move to the new shard 2.
    const stay0 = usersIn(0, 2, 1, "s", { k: 0, n: 3 });
    const movers = usersIn(1, 2, 2, "m", { k: 2, n: 3 });
    const all = [...clients];
    let sent = 0;
    const sender = all[0] as Client;
    const flow = setInterval(() => {
      if (sent < 40) sender.send({ type: "message", text: `f${sent}`, id: `f${sent++}` });
    }, 10);
    // Sockets 4, 5 and 6: the room grows to 3 objects; the movers are sent off with 4307.
    const moving: Client[] = [];
    for (const sub of [...stay0, ...movers]) {
      const c = (await join(room, { sub, since: 0 })).client;
      all.push(c);
      if (movers.includes(sub)) moving.push(c);
    }
    const resumed: Client[] = [];
    const befores: number[][] = [];
    for (const [i, c] of moving.entries()) {
      expect((await c.nextClose(5000)).code).toBe(4307);
      const before = seqsOf(c);
      befores.push(before);
      resumed.push((await join(room, { sub: movers[i] as string, since: before.at(-1) ?? 0 })).client);
    }
    while (sent < 40) await settle(20);
    clearInterval(flow);
    const stayed = all.filter((c) => !moving.includes(c));
    for (const c of [...stayed, ...resumed]) await waitForSeq(c, 40, 8000);
    await settle(300);
    expectExactlyOnce(stayed, 1, 40);
    // A moved client: what it saw before the move, then what it resumed with, is 1..40 once each.
    const all40 = Array.from({ length: 40 }, (_, i) => i + 1);
    for (const [i, before] of befores.entries()) {
      expect([...before, ...seqsOf(resumed[i] as Client)]).toEqual(all40);
    }
    expect((await objectOf(room, 2).shardStatus()).counts.connections).toBe(2);
  });
});

/** Resets an object as a crash would: its memory and its sockets go (clients see 1006). */
async function reset(stub: ReturnType<typeof objectOf>): Promise<void> {
  await runInDurableObject(stub, (_i, state) => state.abort("reset (test)")).catch(() => undefined);
}

describe("sharded rooms: resets that drop sockets", () => {
  it("a shard reset: its clients resume on it from its stored seq and miss nothing, repeat nothing", async () => {
    const { room, users, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    ca.send({ type: "message", text: "m1", id: "r1" });
    await waitForSeq(cb, 1);
    await reset(objectOf(room, 1));
    expect((await cb.nextClose()).code).toBe(1006);
    expect((await cc.nextClose()).code).toBe(1006);
    for (let i = 2; i <= 5; i++) ca.send({ type: "message", text: `m${i}`, id: `r${i}` });
    await waitForSeq(ca, 5);
    // The shard's new instance gets 2..5 by the orderer's delivery, which may come after a's seq 5.
    await until(async () => (await lastDelivered(room, 1)) === 5, "shard 1 to deliver seq 5");
    const nb = await join(room, { sub: users.b, since: 1 });
    const nc = await join(room, { sub: users.c, since: 1 });
    for (const r of [nb, nc]) {
      expect(r.welcome).toMatchObject({ seq: 5, recovered: true });
      await waitForSeq(r.client, 5);
    }
    nb.client.send({ type: "message", text: "m6", id: "r6" });
    for (const c of [ca, nb.client, nc.client]) await waitForSeq(c, 6);
    await settle(200);
    expectExactlyOnce([nb.client, nc.client], 2, 6);
    expectExactlyOnce([ca], 1, 6);
  });

  it("an orderer reset: the shards keep their sockets, their members' retried sends are stored once", async () => {
    const { room, users, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    cb.send({ type: "message", text: "before", id: "o1" });
    await waitForSeq(cc, 1);
    await reset(objectOf(room, 0));
    expect((await ca.nextClose()).code).toBe(1006);
    cb.send({ type: "message", text: "after", id: "o2" });
    // Without an id: retried with its shard's key, stored once too.
    cc.send({ type: "message", text: "after too" });
    for (const c of [cb, cc]) await waitForSeq(c, 3);
    const na = await join(room, { sub: users.a, since: 1 });
    await waitForSeq(na.client, 3);
    await settle(200);
    expect(cb.closed).toBeUndefined();
    expect(cc.all("error")).toEqual([]);
    expectExactlyOnce([cb, cc], 1, 3);
    expectExactlyOnce([na.client], 2, 3);
    const stored = await objectOf(room, 0).readMessages({ since: 0, limit: 10 });
    expect(stored.frames.map((f) => (JSON.parse(f) as { text: string }).text).sort()).toEqual([
      "after",
      "after too",
      "before",
    ]);
  });
});

describe("sharded rooms: a gap older than history", () => {
  it("sends the shard's clients off to resume (4307), where welcome says recovered: false", async () => {
    const { room, users, clients } = await twoShardRoom();
    const [ca, cb] = clients as [Client, Client];
    const orderer = objectOf(room, 0);
    ca.send({ type: "message", text: "seen" });
    await waitForSeq(cb, 1);
    // The shard gets nothing of the next 60 messages, more than the 50 the orderer keeps.
    await orderer.failNextDeliveries(100_000);
    // Published by a backend (the HTTP API's path): no socket rate limit to pace.
    for (let i = 0; i < 60; i++) await orderer.publish(room, { id: "backend", name: "Backend" }, { text: `m${i}` });
    await waitForSeq(ca, 61, 10_000);
    const last = await orderer.readMessages({ since: 60, limit: 1 });
    await objectOf(room, 1).deliver({ map: { n: 2, epoch: 1 }, from: 61, frames: last.frames, latest: 61 });
    expect((await cb.nextClose()).code).toBe(4307);
    expect(seqsOf(cb)).toEqual([1]);
    await orderer.failNextDeliveries(0);
    const back = await join(room, { sub: users.b, since: 1 });
    expect(back.welcome).toMatchObject({ seq: 61, recovered: false, missed: { from: 2, to: 11 } });
  });
});

describe("sharded rooms: shrinking", () => {
  it("shrinks back with hysteresis once small enough for a while: the retired shard's members move (4307) and miss nothing", async () => {
    const { room, users, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    ca.send({ type: "message", text: "one", id: "s1" });
    await waitForSeq(cb, 1);
    // 2 sockets: not small enough for 1 object at half the threshold (1.5), so no shrink.
    cc.close();
    await settle(800);
    expect((await objectOf(room, 0).shardStatus()).map).toEqual({ n: 2, epoch: 1 });
    // 1 socket, on the shard to retire: after SHARD_SHRINK_AFTER_MS the room is one object again.
    ca.close();
    expect((await cb.nextClose(5000)).code).toBe(4307);
    expect((await objectOf(room, 0).shardStatus()).map).toEqual({ n: 1, epoch: 2 });
    const back = await join(room, { sub: users.b, since: 1 });
    expect(back.welcome).toMatchObject({ seq: 1, recovered: true });
    expect((await objectOf(room, 0).shardStatus()).counts.connections).toBe(1);
    back.client.send({ type: "message", text: "two", id: "s2" });
    expect(await back.client.next("ack")).toMatchObject({ id: "s2", seq: 2 });
    expect(seqsOf(back.client)).toEqual([2]);
  });
});
