/**
 * Per-sender order on a shard (docs/scaling.md): a connection's answers come in the order of its
 * frames, as in one object, although its room messages and history pages go through the orderer;
 * a direct message never overtakes its sender's room messages; and one member waiting on the
 * orderer holds up nobody else.
 */
import { describe, expect, it } from "vitest";
import { type Client, settle } from "../helpers";
import { labels, objectOf, SLOW_PING, twoShardRoom, waitForSeq } from "./support";

describe("sharded rooms: per-sender order on a shard", () => {
  it("a pong and an error answer after the ack of the room message sent before them", async () => {
    const { clients } = await twoShardRoom();
    const cb = clients[1] as Client;
    cb.send({ type: "message", text: "first", id: "p1" });
    cb.sendRaw(SLOW_PING);
    cb.send({ type: "nonsense" });
    await cb.waitFor((f) => f.some((x) => x.type === "error"), "the error");
    await settle(100);
    expect(labels(cb)).toEqual(["msg:1", "ack:p1", "pong", "error:invalid_message"]);
  });

  it("an id-less message's own broadcast comes before the answer to the next frame", async () => {
    const { clients } = await twoShardRoom();
    const cb = clients[1] as Client;
    cb.send({ type: "message", text: "no id" });
    cb.sendRaw(SLOW_PING);
    await cb.next("pong");
    await settle(100);
    expect(labels(cb)).toEqual(["msg:1", "pong"]);
  });

  it("a history page answers before the answers to later frames", async () => {
    const { clients } = await twoShardRoom();
    const [ca, cb] = clients as [Client, Client];
    ca.send({ type: "message", text: "stored", id: "h0" });
    await waitForSeq(cb, 1);
    cb.send({ type: "history", limit: 10 });
    cb.sendRaw(SLOW_PING);
    cb.send({ type: "message", text: "after", id: "h1" });
    await cb.next("ack");
    await settle(100);
    expect(labels(cb)).toEqual(["msg:1", "history", "pong", "msg:2", "ack:h1"]);
  });

  it("a direct message does not overtake its sender's room message, here or in another object", async () => {
    const { users, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    cb.send({ type: "message", text: "room", id: "r1" });
    cb.send({ type: "message", text: "to c", to: users.c, id: "d1" });
    cb.send({ type: "message", text: "to a", to: users.a, id: "d2" });
    await cb.waitFor((f) => f.filter((x) => x.type === "ack").length === 3, "3 acks");
    // Each DM was delivered before its ack was sent, but on another socket: its frame may come later.
    await cc.waitFor(() => labels(cc).includes("dm:to c"), "c's DM");
    await ca.waitFor(() => labels(ca).includes("dm:to a"), "a's DM");
    await settle(100);
    expect(labels(cc)).toEqual(["msg:1", "dm:to c"]);
    expect(labels(ca)).toEqual(["msg:1", "dm:to a"]);
    expect(labels(cb)).toEqual(["msg:1", "ack:r1", "ack:d1", "ack:d2"]);
  });

  it("a direct message from the orderer's member reaches a shard after the room message sent before it", async () => {
    const { room, users, clients } = await twoShardRoom();
    const [ca, cb] = clients as [Client, Client];
    // The room message's delivery to the shard is late (lost once, retried); the DM is not.
    await objectOf(room, 0).failNextDeliveries(1);
    ca.send({ type: "message", text: "room", id: "o1" });
    ca.send({ type: "message", text: "to b", to: users.b, id: "o2" });
    await cb.waitFor((f) => f.some((x) => x.type === "message" && x.to !== undefined), "the DM");
    // The DM's ack goes to a's socket after b's got the DM: it may arrive after it.
    await ca.waitFor(() => labels(ca).includes("ack:o2"), "the DM's ack");
    await settle(100);
    expect(labels(cb)).toEqual(["msg:1", "dm:to b"]);
    expect(labels(ca)).toEqual(["msg:1", "ack:o1", "ack:o2"]);
  });

  it("a member waiting on the orderer holds up nobody else on its shard", async () => {
    const { room, clients } = await twoShardRoom();
    const [, cb, cc] = clients as [Client, Client, Client];
    // b's message waits for a retry (its answer is lost); c's answers do not wait for it.
    await objectOf(room, 1).loseNextSubmitAnswers(3);
    cb.send({ type: "message", text: "slow", id: "s1" });
    cb.sendRaw(SLOW_PING);
    cc.sendRaw(SLOW_PING);
    await cc.next("pong");
    expect(labels(cb)).toEqual([]);
    await cb.next("pong", 5000);
    expect(labels(cb)).toEqual(["msg:1", "ack:s1", "pong"]);
  });
});
