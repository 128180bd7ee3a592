/**
 * Per-sender order on the orderer of a sharded room (docs/scaling.md): a direct message or a signal
 * to a user in another object is answered when that object answers, yet the sender's later answers
 * (pongs, errors, history pages, acks of later room messages) still come after it, in the order of
 * its frames, as in one object; and one connection waiting on another object holds up nobody else.
 * The recipient's object is made slow on purpose (`holdDirectIn`), so the order is not left to luck.
 */
import { describe, expect, it } from "vitest";
import { type Client, join, settle, uniqueRoom } from "../helpers";
import { labels, objectOf, SLOW_PING, twoShardRoom, usersIn, waitForSeq } from "./support";

/** A user with no connection who would live in shard `k` of 2: a DM or signal to them goes there. */
function nobodyIn(k: number): string {
  return usersIn(k, 2, 1, "nobody")[0] as string;
}

describe("sharded rooms: per-sender order on the orderer", () => {
  it("a DM's ack from a shard comes before the answers to the sender's later frames", async () => {
    const { room, users, clients } = await twoShardRoom();
    const [ca, cb] = clients as [Client, Client];
    await objectOf(room, 1).holdDirectIn();
    ca.send({ type: "message", text: "to b", to: users.b, id: "d1" });
    ca.sendRaw(SLOW_PING);
    ca.send({ type: "nonsense" });
    ca.send({ type: "history", limit: 10 });
    ca.send({ type: "message", text: "after", id: "m1" });
    // The later room message is stored and sent to everyone; only the answers wait for the DM's.
    await waitForSeq(ca, 1);
    await settle(100);
    expect(labels(ca)).toEqual(["msg:1"]);
    await objectOf(room, 1).releaseDirectIn();
    await ca.waitFor((f) => f.some((x) => x.type === "ack" && x.id === "m1"), "the ack of m1");
    await settle(100);
    expect(labels(ca)).toEqual(["msg:1", "ack:d1", "pong", "error:invalid_message", "history", "ack:m1"]);
    // Delivered on b's socket before a's ack went out, but another socket's frames may come later.
    await cb.waitFor(() => labels(cb).includes("dm:to b"), "b's DM");
  });

  it("unknown_recipient for a DM to nobody in a shard comes before the answers to later frames", async () => {
    const { room, clients } = await twoShardRoom();
    const ca = clients[0] as Client;
    await objectOf(room, 1).holdDirectIn();
    ca.send({ type: "message", text: "anyone?", to: nobodyIn(1), id: "d2" });
    ca.sendRaw(SLOW_PING);
    await settle(200);
    expect(labels(ca)).toEqual([]);
    await objectOf(room, 1).releaseDirectIn();
    await ca.next("pong");
    await settle(100);
    expect(labels(ca)).toEqual(["error:unknown_recipient", "pong"]);
  });

  it("unknown_recipient for a signal to nobody in another object comes before later answers, on the orderer and on a shard", async () => {
    const { room, clients } = await twoShardRoom();
    const [ca, cb] = clients as [Client, Client];
    await objectOf(room, 1).holdDirectIn();
    await objectOf(room, 0).holdDirectIn();
    ca.send({ type: "signal", data: { hi: 1 }, to: nobodyIn(1) });
    ca.sendRaw(SLOW_PING);
    cb.send({ type: "signal", data: { hi: 2 }, to: nobodyIn(0) });
    cb.sendRaw(SLOW_PING);
    await settle(200);
    expect(labels(ca)).toEqual([]);
    expect(labels(cb)).toEqual([]);
    await objectOf(room, 1).releaseDirectIn();
    await objectOf(room, 0).releaseDirectIn();
    await ca.next("pong");
    await cb.next("pong");
    await settle(100);
    expect(labels(ca)).toEqual(["error:unknown_recipient", "pong"]);
    expect(labels(cb)).toEqual(["error:unknown_recipient", "pong"]);
  });

  it("a connection waiting on a shard holds up nobody else: not its user's other socket, not another member", async () => {
    const room = uniqueRoom("order");
    const [a, a2] = usersIn(0, 2, 2, "a");
    const [b] = usersIn(1, 2, 1, "b");
    const ca = (await join(room, { sub: a })).client;
    const ca2 = (await join(room, { sub: a2 })).client;
    const moved = (await join(room, { sub: b })).client;
    // The third socket grows the room to 2 objects; b is moved to shard 1.
    expect((await moved.nextClose()).code).toBe(4307);
    const cb = (await join(room, { sub: b, since: 0 })).client;
    const caOther = (await join(room, { sub: a })).client;
    await objectOf(room, 1).holdDirectIn();
    ca.send({ type: "message", text: "held", to: b, id: "d1" });
    ca.sendRaw(SLOW_PING);
    for (const [client, id] of [
      [caOther, "x1"],
      [ca2, "y1"],
    ] as const) {
      client.sendRaw(SLOW_PING);
      client.send({ type: "message", text: id, id });
      await client.next("ack");
      expect(labels(client)).toEqual(expect.arrayContaining(["pong", `ack:${id}`]));
    }
    await waitForSeq(ca, 2);
    expect(labels(ca)).toEqual(["msg:1", "msg:2"]);
    await objectOf(room, 1).releaseDirectIn();
    await ca.next("pong");
    expect(labels(ca)).toEqual(["msg:1", "msg:2", "ack:d1", "pong"]);
    await cb.waitFor(() => labels(cb).includes("dm:held"), "b's DM");
    // The user's other socket gets a copy of the DM once it was delivered.
    await caOther.waitFor((f) => f.some((x) => x.type === "message" && x.to === b), "the DM's copy");
  });
});
