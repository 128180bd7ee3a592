/**
 * One room over several objects (docs/scaling.md), with SHARD_GROW_AT=3: a room grows to 2 objects
 * at its third socket and to 3 at its sixth. Every client must see every message exactly once, in
 * the same seq order, wherever it is connected.
 */
import { evictDurableObject, runInDurableObject, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { MessageFrame } from "../../src/protocol";
import { encodeHandoff, HANDOFF_HEADER } from "../../src/room/handoff";
import { readRedirect } from "../../src/room/shard-map";
import { type Client, join, mintToken, settle, uniqueRoom } from "../helpers";
import { expectExactlyOnce, objectOf, seqsOf, usersIn, waitForSeq } from "./support";

/** A room grown to 2 objects: `a` on the orderer, `b` and `c` moved to shard 1 and back in. */
async function twoShardRoom() {
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
    const [ca, cb] = clients as [Client, Client];
    for (let i = 0; i < 5; i++) ca.send({ type: "message", text: `m${i}` });
    await waitForSeq(cb, 5);
    cb.close();
    for (let i = 5; i < 8; i++) ca.send({ type: "message", text: `m${i}` });
    await waitForSeq(ca, 8);
    const back = await join(room, { sub: users.b, since: 2 });
    expect(back.welcome).toMatchObject({ seq: 8, recovered: true });
    await waitForSeq(back.client, 8);
    expect(seqsOf(back.client)).toEqual([3, 4, 5, 6, 7, 8]);
  });

  it("redirects a user handed to the wrong object (a stale map), and the Worker follows it", async () => {
    const { room, users } = await twoShardRoom();
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

describe("sharded rooms: resets and splits", () => {
  it("a shard that loses its memory continues from its stored seq; a reconnect storm reads history once", async () => {
    const { room, users, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    for (let i = 0; i < 4; i++) ca.send({ type: "message", text: `m${i}` });
    await waitForSeq(cc, 4);
    cb.close();
    cc.close();
    await evictDurableObject(objectOf(room, 1));
    for (let i = 4; i < 6; i++) ca.send({ type: "message", text: `m${i}` });
    await waitForSeq(ca, 6);
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

describe("sharded rooms: presence and admin", () => {
  it("tells every socket the room-wide counts with an occupancy frame", async () => {
    const { clients } = await twoShardRoom();
    const occupancy = (c: Client) =>
      (c.frames as unknown as Array<{ type: string; online?: number; connections?: number }>).filter(
        (f) => f.type === "occupancy",
      );
    for (const c of clients) {
      await c.waitFor(
        () => occupancy(c).some((f) => f.online === 3 && f.connections === 3),
        "occupancy 3 users, 3 connections",
        // Counts converge through reports (within 250 ms) and frames at most once a second.
        8000,
      );
    }
    (clients[2] as Client).close();
    for (const c of clients.slice(0, 2)) {
      await c.waitFor(() => occupancy(c).at(-1)?.connections === 2, "occupancy down to 2 connections", 8000);
    }
  });

  it("kicks a user wherever its connections are (the orderer routes the kick to the user's shard)", async () => {
    const { room, users, clients } = await twoShardRoom();
    const kicked = await objectOf(room, 0).kick(users.b as string);
    expect(kicked).toBe(1);
    expect((await (clients[1] as Client).nextClose()).code).toBe(4403);
    expect((clients[2] as Client).closed).toBeUndefined();
  });

  it("counts the whole room in the HTTP API's info", async () => {
    const { room } = await twoShardRoom();
    await settle(400);
    expect(await objectOf(room, 0).info()).toMatchObject({ connections: 3, shards: 2 });
  });
});

describe("sharded rooms: direct messages", () => {
  it("delivers a direct message to a user on another object, acks it, and says unknown_recipient for nobody", async () => {
    const { users, clients } = await twoShardRoom();
    const [ca, cb] = clients as [Client, Client];
    ca.send({ type: "message", text: "psst", to: users.b, id: "dm1" });
    const got = await cb.next("message");
    expect(got).toMatchObject({ text: "psst", to: users.b, from: { id: users.a } });
    expect(got.seq).toBeUndefined();
    expect(await ca.next("ack")).toMatchObject({ id: "dm1" });
    cb.send({ type: "message", text: "back", to: users.a, id: "dm2" });
    expect(await ca.next("message")).toMatchObject({ text: "back", from: { id: users.b } });
    ca.send({ type: "message", text: "anyone?", to: "nobody-here", id: "dm3" });
    expect(await ca.next("error")).toMatchObject({ code: "unknown_recipient", id: "dm3" });
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
    cc.send({ type: "message", text: "after too", id: "o3" });
    for (const c of [cb, cc]) await waitForSeq(c, 3);
    const na = await join(room, { sub: users.a, since: 1 });
    await waitForSeq(na.client, 3);
    await settle(200);
    expect(cb.closed).toBeUndefined();
    expectExactlyOnce([cb, cc], 1, 3);
    expectExactlyOnce([na.client], 2, 3);
  });
});

describe("sharded rooms: the roster through the HTTP API", () => {
  it("pages every user of every object by id, with a cursor", async () => {
    const { room, users } = await twoShardRoom();
    const admin = await mintToken({ sub: "ops", role: "admin" });
    const get = async (query: string) => {
      const response = await SELF.fetch(`https://rooms.test/api/rooms/${room}/users${query}`, {
        headers: { Authorization: `Bearer ${admin}` },
      });
      expect(response.status).toBe(200);
      return (await response.json()) as { users: Array<{ id: string; connections: number }>; next?: string };
    };
    const all = [users.a, users.b, users.c].map(String).sort();
    const first = await get("?limit=2");
    expect(first.users.map((u) => u.id)).toEqual(all.slice(0, 2));
    expect(first.next).toBe(all[1]);
    const second = await get(`?limit=2&after=${first.next}`);
    expect(second.users.map((u) => u.id)).toEqual(all.slice(2));
    expect(second.next).toBeUndefined();
    expect((await get("")).users.every((u) => u.connections === 1)).toBe(true);
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
    expect(back.welcome).toMatchObject({ seq: 61, recovered: false });
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
