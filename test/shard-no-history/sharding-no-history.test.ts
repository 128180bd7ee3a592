/**
 * A sharded room with HISTORY_LIMIT=0 (test/shard-no-history/vitest.config.ts): the orderer stores
 * no frame, so a shard resumes only from its own buffer and cannot fill a gap. It sends its clients
 * off (4307), and each learns on resuming that what it missed is gone (`recovered: false`, `missed`).
 */
import { describe, expect, it } from "vitest";
import { type Client, join, settle } from "../helpers";
import { expectExactlyOnce, objectOf, seqsOf, twoShardRoom, waitForSeq } from "../shard/support";

describe("sharded rooms without history", () => {
  it("delivers every message exactly once, in order, and resumes from a shard's buffer", async () => {
    const { room, users, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    for (let i = 0; i < 3; i++) {
      ca.send({ type: "message", text: `a${i}`, id: `a${i}` });
      cb.send({ type: "message", text: `b${i}` });
    }
    for (const c of clients) await waitForSeq(c, 6);
    await settle(100);
    expectExactlyOnce(clients, 1, 6);
    cc.close();
    const back = await join(room, { sub: users.c, since: 2 });
    expect(back.welcome).toMatchObject({ seq: 6, recovered: true });
    await waitForSeq(back.client, 6);
    expect(seqsOf(back.client)).toEqual([3, 4, 5, 6]);
    expect(back.welcome.missed).toBeUndefined();
  });

  it("a gap it cannot fill sends the shard's clients off (4307); they resume with recovered: false and what is missed", async () => {
    const { room, users, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    const orderer = objectOf(room, 0);
    ca.send({ type: "message", text: "seen", id: "g1" });
    await waitForSeq(cb, 1);
    // The shard gets nothing of the next 3 messages; then it learns that the room is at seq 4.
    await orderer.failNextDeliveries(100_000);
    for (let i = 2; i <= 4; i++) ca.send({ type: "message", text: `m${i}`, id: `g${i}` });
    await waitForSeq(ca, 4);
    await objectOf(room, 1).deliver({ map: { n: 2, epoch: 1 }, from: 5, frames: [], latest: 4 });
    expect((await cb.nextClose()).code).toBe(4307);
    expect((await cc.nextClose()).code).toBe(4307);
    expect(seqsOf(cb)).toEqual([1]);
    await orderer.failNextDeliveries(0);
    const nb = await join(room, { sub: users.b, since: 1 });
    const nc = await join(room, { sub: users.c, since: 1 });
    for (const r of [nb, nc]) expect(r.welcome).toMatchObject({ seq: 4, recovered: false, missed: { from: 2, to: 4 } });
    // What comes next reaches everyone once, in order.
    ca.send({ type: "message", text: "after", id: "g5" });
    nb.client.send({ type: "message", text: "after too", id: "g6" });
    for (const c of [ca, nb.client, nc.client]) await waitForSeq(c, 6);
    await settle(200);
    expectExactlyOnce([ca], 1, 6);
    expectExactlyOnce([nb.client, nc.client], 5, 6);
    expect(seqsOf(nb.client)).toEqual([5, 6]);
  });
});
