/**
 * Review of the room-wide roster over the socket (docs/scaling.md, "The roster over the socket"):
 * holes found after it landed, each a test that failed before its fix.
 */
import { describe, expect, it } from "vitest";
import type { PresenceEntry } from "../../src/protocol";
import { MOVED_GRACE_MS } from "../../src/room/presence-feed";
import { type Client, join, settle } from "../helpers";
import { objectOf, twoShardRoom, usersIn } from "./support";

type Frame = { type: string; event?: string; user?: { id: string }; presence?: PresenceEntry[]; state?: unknown };

function events(client: Client, event: "join" | "leave" | "update", id: string): number {
  return (client.frames as unknown as Frame[]).filter(
    (f) => f.type === "presence" && f.event === event && f.user?.id === id,
  ).length;
}

/** What a client holds of each user, folding frames as the bundled client does (src/client/room-view.ts). */
function statesOf(client: Client): Map<string, unknown> {
  const users = new Map<string, unknown>();
  for (const f of client.frames as unknown as Frame[]) {
    if (f.type === "welcome" || (f.type === "roster" && (f as { roster?: boolean }).roster === true)) {
      users.clear();
      for (const e of f.presence ?? []) users.set(e.id, e.state);
    } else if (f.type === "presence" && f.user) {
      if (f.event === "leave") users.delete(f.user.id);
      else if (f.event === "join") users.set(f.user.id, undefined);
      else users.set(f.user.id, f.state);
    }
  }
  return users;
}

describe("sharded rooms: the roster over the socket (review)", () => {
  it("a user that sets its state right after joining on a shard is seen with it on the other objects (its join comes first)", async () => {
    const { room, clients } = await twoShardRoom();
    const [ca, cb] = clients as [Client, Client, Client];
    await settle(MOVED_GRACE_MS);
    const [e] = usersIn(1, 2, 1, "e");
    const ce = (await join(room, { sub: e })).client;
    // As a client does: its state (a cursor, a colour) right after its welcome.
    ce.send({ type: "presence", state: { color: "red" } });
    await cb.waitFor(() => events(cb, "update", String(e)) === 1, "b (same object) gets e's state");
    await ca.waitFor(() => events(ca, "join", String(e)) === 1, "a (the orderer) gets e's join");
    // The state travels by the relay, the join by the shard's report and the orderer's push: the
    // state may be held until the join (it mostly is) or come later, after no fixed time.
    await ca.waitFor(() => events(ca, "update", String(e)) === 1, "a (the orderer) gets e's state");
    // In one object a join always comes before the user's first update; so it must here.
    const seq = (ca.frames as unknown as Frame[])
      .filter((f) => f.type === "presence" && f.user?.id === e)
      .map((f) => f.event);
    expect(seq[0]).toBe("join");
    expect(statesOf(ca).get(String(e))).toEqual({ color: "red" });
    expect(statesOf(cb).get(String(e))).toEqual({ color: "red" });
  });

  it("leaves told by one push carry the count after each, as in one object", async () => {
    const { users, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    await settle(MOVED_GRACE_MS);
    // b and c (shard 1) leave together: one report, one push to the orderer.
    cb.close();
    cc.close();
    const leaves = () =>
      (ca.frames as unknown as Array<Frame & { online?: number }>).filter(
        (f) => f.type === "presence" && f.event === "leave",
      );
    await ca.waitFor(() => leaves().length === 2, "a sees b and c leave");
    expect(leaves().map((f) => f.online)).toEqual([2, 1]);
    expect(users.a).toBeDefined();
  });

  it("a user moved off a retired shard (the room shrank) is neither a leave nor a join while it reconnects within the moved grace", async () => {
    const { room, users, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    // Three more sockets grow the room to 3 objects: e and f (shard 2 of 3) are moved there.
    const [d] = usersIn(0, 3, 1, "d", { k: 0, n: 2 });
    const [e] = usersIn(2, 3, 1, "e", { k: 0, n: 2 });
    const [f] = usersIn(2, 3, 1, "f", { k: 1, n: 2 });
    const cd = (await join(room, { sub: d })).client;
    const ce0 = (await join(room, { sub: e })).client;
    const cf0 = (await join(room, { sub: f })).client;
    expect((await ce0.nextClose()).code).toBe(4307);
    expect((await cf0.nextClose()).code).toBe(4307);
    const ce = (await join(room, { sub: e, since: 0 })).client;
    const cf = (await join(room, { sub: f, since: 0 })).client;
    expect((await objectOf(room, 0).shardStatus()).map.n).toBe(3);
    await ca.waitFor(() => events(ca, "join", String(e)) === 1, "a holds e");
    await cb.waitFor(() => events(cb, "join", String(e)) === 1, "b holds e");
    // Past the moved grace of the growth: nobody lingers in its old object any more.
    await settle(MOVED_GRACE_MS + 300);
    // Down to 3 sockets (a, b, e): after SHARD_SHRINK_AFTER_MS shard 2 retires and e is moved (4307).
    cc.close();
    cd.close();
    cf.close();
    expect((await ce.nextClose(6000)).code).toBe(4307);
    // e's client comes back within the moved grace, but not at once (a slow network, a backoff).
    await settle(1000);
    const back = (await join(room, { sub: e, since: 0 })).client;
    await settle(MOVED_GRACE_MS);
    expect((await objectOf(room, 0).shardStatus()).map.n).toBe(2);
    for (const [name, c] of [
      ["a", ca],
      ["b", cb],
    ] as const) {
      expect(events(c, "leave", String(e)), `${name} saw e leave`).toBe(0);
      expect(events(c, "join", String(e)), `${name} saw e join twice`).toBe(1);
    }
    // And once it is really gone, it leaves everywhere (the retired shard's users are not kept forever).
    back.close();
    await ca.waitFor(() => events(ca, "leave", String(e)) === 1, "a sees e leave", 8000);
    await cb.waitFor(() => events(cb, "leave", String(e)) === 1, "b sees e leave", 8000);
    expect(users.a).toBeDefined();
  });
});
