/**
 * Signals, presence-state updates and binary frames across the objects of a sharded room
 * (src/room/relay.ts): said on one object, they reach the members of every other, through the orderer.
 */
import { describe, expect, it } from "vitest";

// Generous waits: the machine these run on is shared; a relay is a call or two, not seconds.
import { type Client, join, settle } from "../helpers";
import { twoShardRoom, usersIn } from "./support";

describe("sharded rooms: ephemeral frames reach every object", () => {
  it("relays a signal from a shard to the orderer's members and back, never to its sender", async () => {
    const { users, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    cb.send({ type: "signal", data: { cursor: 1 } });
    expect(await ca.next("signal", 8000)).toMatchObject({ from: { id: users.b }, data: { cursor: 1 } });
    expect(await cc.next("signal", 8000)).toMatchObject({ from: { id: users.b } });
    ca.send({ type: "signal", data: { cursor: 2 } });
    for (const c of [cb, cc])
      expect(await c.next("signal", 8000)).toMatchObject({ from: { id: users.a }, data: { cursor: 2 } });
    await settle(200);
    expect(ca.all("signal").map((s) => s.from.id)).toEqual([users.b]);
    expect(cb.all("signal").map((s) => s.from.id)).toEqual([users.a]);
  });

  it("sends a signal to a user on another object, and says unknown_recipient when nobody has it", async () => {
    const { users, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    ca.send({ type: "signal", data: { hi: 1 }, to: users.b });
    expect(await cb.next("signal", 8000)).toMatchObject({ from: { id: users.a }, to: users.b, data: { hi: 1 } });
    cb.send({ type: "signal", data: { hi: 2 }, to: users.a });
    expect(await ca.next("signal", 8000)).toMatchObject({ from: { id: users.b }, to: users.a });
    ca.send({ type: "signal", data: {}, to: "nobody-here" });
    expect(await ca.next("error", 8000)).toMatchObject({ code: "unknown_recipient" });
    await settle(200);
    expect(cc.all("signal")).toEqual([]);
  });

  it("relays presence-state updates to every object", async () => {
    const { users, clients } = await twoShardRoom();
    const [ca, cb] = clients as [Client, Client, Client];
    cb.send({ type: "presence", state: { mood: "b" } });
    await ca.waitFor(
      (f) => f.some((x) => x.type === "presence" && x.event === "update" && x.user.id === users.b),
      "b's update on the orderer",
      8000,
    );
    ca.send({ type: "presence", state: { mood: "a" } });
    await ca.waitFor(
      (f) => f.some((x) => x.type === "presence" && x.event === "update" && x.user.id === users.a),
      "a's update on the orderer",
      8000,
    );
    await cb.waitFor(
      (f) => f.some((x) => x.type === "presence" && x.event === "update" && x.user.id === users.a),
      "a's update on the shard",
      8000,
    );
  });

  it("relays binary frames, each right after the text frame naming its sender", async () => {
    const { users, clients } = await twoShardRoom();
    const [ca, cb] = clients as [Client, Client, Client];
    cb.sendRaw(new Uint8Array([1, 2, 3]));
    await ca.waitFor((f) => f.some((x) => x.type === "bytes"), "the bytes on the orderer", 8000);
    const at = ca.frames.findIndex((x) => x.type === "bytes");
    expect(ca.frames[at - 1]).toMatchObject({ type: "binary", from: { id: users.b } });
    expect([...((ca.frames[at] as { bytes: Uint8Array }).bytes ?? [])]).toEqual([1, 2, 3]);
    ca.sendRaw(new Uint8Array([9]));
    await cb.waitFor((f) => f.some((x) => x.type === "bytes"), "the bytes on the shard", 8000);
  });

  it("relays from one shard to another through the orderer (a room of three objects)", async () => {
    const { room, clients } = await twoShardRoom();
    // Three more sockets grow the room to 3 objects; these two users live in shard 2 then.
    const [x, y] = usersIn(2, 3, 2, "z", { k: 1, n: 2 });
    const [s0] = usersIn(0, 3, 1, "s", { k: 0, n: 2 });
    const extra: Client[] = [(await join(room, { sub: s0 as string })).client];
    const moving: Client[] = [];
    for (const sub of [x, y] as string[]) moving.push((await join(room, { sub, since: 0 })).client);
    for (const c of moving) expect((await c.nextClose(5000)).code).toBe(4307);
    const cx = (await join(room, { sub: x as string, since: 0 })).client;
    const cy = (await join(room, { sub: y as string, since: 0 })).client;
    const cb = clients[1] as Client;
    cx.send({ type: "signal", data: { from: "shard2" } });
    expect(await cb.next("signal", 8000)).toMatchObject({ from: { id: x }, data: { from: "shard2" } });
    expect(await cy.next("signal", 8000)).toMatchObject({ from: { id: x } });
    cb.send({ type: "signal", data: { from: "shard1" } });
    expect(await cx.next("signal", 8000)).toMatchObject({ data: { from: "shard1" } });
    for (const c of [...extra, cx, cy]) c.close();
  });
});
