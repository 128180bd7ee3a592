/**
 * The roster over the socket in a room spread over several objects (docs/scaling.md, "Presence"):
 * below PRESENCE_ROSTER_MAX every member sees every user of the room, wherever its connections are,
 * in `welcome.presence`, `join`/`leave` and `roster` frames; a user moving between objects is
 * neither a leave nor a join; a reset or a memory loss leaves no phantom and no hole.
 */
import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { PresenceEntry } from "../../src/protocol";
import { MOVED_GRACE_MS } from "../../src/room/presence-feed";
import { type Client, join, settle, until } from "../helpers";
import { rosterView } from "../support/roster-view";
import { objectOf, twoShardRoom, usersIn } from "./support";

type Frame = { type: string; event?: string; user?: { id: string }; presence?: PresenceEntry[]; roster?: boolean };

/** The users a client holds as online. */
function viewOf(client: Client): string[] {
  return rosterView(client.frames);
}

function events(client: Client, event: "join" | "leave"): string[] {
  return (client.frames as unknown as Frame[])
    .filter((f) => f.type === "presence" && f.event === event)
    .map((f) => f.user?.id as string);
}

async function expectView(client: Client, users: Array<string | undefined>, what: string, timeoutMs = 5000) {
  const want = users.map(String).sort();
  await client.waitFor(() => JSON.stringify(viewOf(client)) === JSON.stringify(want), what, timeoutMs);
}

async function reset(stub: ReturnType<typeof objectOf>): Promise<void> {
  await runInDurableObject(stub, (_i, state) => state.abort("reset (test)")).catch(() => undefined);
}

describe("sharded rooms: the roster over the socket", () => {
  it("welcome.presence lists the users of every object, on the orderer and on a shard", async () => {
    const { room, users, clients } = await twoShardRoom();
    const [d] = usersIn(0, 2, 1, "d");
    const [e] = usersIn(1, 2, 1, "e");
    const all = [users.a, users.b, users.c];
    await expectView(clients[0] as Client, all, "a holds a, b and c");
    const onOrderer = await join(room, { sub: d });
    // Once shard 1 was told of d (its member b holds d), a newcomer there is welcomed with d.
    await expectView(clients[1] as Client, [...all, d], "b holds d");
    const onShard = await join(room, { sub: e });
    expect(onOrderer.welcome.presence.map((p) => p.id).sort()).toEqual([...all, d].map(String).sort());
    expect(onShard.welcome.presence.map((p) => p.id).sort()).toEqual([...all, d, e].map(String).sort());
  });

  it("a user moving to another object is neither a leave nor a join for the others", async () => {
    const { users, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    // b and c joined on the orderer, were moved (4307) and came back on shard 1: wait past the grace
    // of a moved user, after which the orderer would say they left if it did not see them on shard 1.
    await settle(MOVED_GRACE_MS + 500);
    expect(events(ca, "leave")).toEqual([]);
    await expectView(ca, [users.a, users.b, users.c], "a holds a, b and c");
    await expectView(cb, [users.a, users.b, users.c], "b holds a, b and c");
    await expectView(cc, [users.a, users.b, users.c], "c holds a, b and c");
  });

  it("a join or a leave on one object reaches the members of every other, with the room-wide count", async () => {
    const { room, users, clients } = await twoShardRoom();
    const [ca, cb] = clients as [Client, Client, Client];
    await settle(400);
    const [d] = usersIn(1, 2, 1, "d");
    const [e] = usersIn(0, 2, 1, "e");
    const cd = (await join(room, { sub: d })).client;
    await expectView(ca, [users.a, users.b, users.c, d], "a holds d");
    const ce = (await join(room, { sub: e })).client;
    const all = [users.a, users.b, users.c, d, e];
    for (const c of [ca, cb, cd, ce]) await expectView(c, all, "everyone holds all five");
    const joinOfD = (ca.frames as unknown as Array<Frame & { online?: number }>).find(
      (f) => f.type === "presence" && f.event === "join" && f.user?.id === d,
    );
    expect(joinOfD?.online).toBe(4);
    cd.close();
    ce.close();
    const left = [users.a, users.b, users.c];
    for (const c of [ca, cb]) await expectView(c, left, "d and e left everywhere");
    expect(events(ca, "join").filter((id) => id === d)).toEqual([d]);
  });

  it("a shard reset leaves no phantom: its users leave everywhere once the orderer hears from it", async () => {
    const { room, users, clients } = await twoShardRoom();
    const [ca, cb, cc] = clients as [Client, Client, Client];
    await expectView(ca, [users.a, users.b, users.c], "a holds a, b and c");
    // And shard 1 holds (and has stored) a, from a push that may come after b's and c's welcomes:
    // reset before it, the new instance has no mirror and welcomes b without a.
    await expectView(cb, [users.a, users.b, users.c], "b holds a, b and c");
    await reset(objectOf(room, 1));
    expect((await cb.nextClose()).code).toBe(1006);
    expect((await cc.nextClose()).code).toBe(1006);
    // Any delivery reaches the shard again, whose report is then the empty one of its new instance.
    ca.send({ type: "message", text: "anyone?" });
    await expectView(ca, [users.a], "b and c gone from a's view");
    const nb = await join(room, { sub: users.b, since: 0 });
    expect(nb.welcome.presence.map((p) => p.id).sort()).toEqual([users.a, users.b].map(String).sort());
    await expectView(ca, [users.a, users.b], "b back in a's view");
  });

  it("an orderer that loses its memory (or resets) learns its shards' users again", async () => {
    const { room, users, clients } = await twoShardRoom();
    const [ca, cb] = clients as [Client, Client, Client];
    await expectView(ca, [users.a, users.b, users.c], "a holds a, b and c");
    await evictDurableObject(objectOf(room, 0));
    const [d] = usersIn(0, 2, 1, "d");
    const cd = (await join(room, { sub: d })).client;
    await expectView(cd, [users.a, users.b, users.c, d], "the new member holds everyone");
    await expectView(cb, [users.a, users.b, users.c, d], "b holds the new member");
    await reset(objectOf(room, 0));
    const na = (await join(room, { sub: users.a })).client;
    await expectView(na, [users.a, users.b, users.c], "after a reset, a holds b and c again");
    expect(events(cb, "leave").filter((id) => id === users.b || id === users.c)).toEqual([]);
  });

  it("a shard that loses its memory keeps its members' view whole, by joins and leaves (its mirror is stored)", async () => {
    const { room, users, clients } = await twoShardRoom();
    const [ca, cb] = clients as [Client, Client, Client];
    await expectView(cb, [users.a, users.b, users.c], "b holds a, b and c");
    await settle(200);
    const rosters = () => cb.all("roster").length;
    const before = rosters();
    await evictDurableObject(objectOf(room, 1));
    const [d] = usersIn(0, 2, 1, "d");
    const cd = (await join(room, { sub: d })).client;
    await cb.waitFor(() => events(cb, "join").includes(String(d)), "a join for d at b, after its shard woke");
    await expectView(cb, [users.a, users.b, users.c, d], "b holds d");
    expect(rosters()).toBe(before);
    cd.close();
    await expectView(cb, [users.a, users.b, users.c], "and sees d leave");
    await expectView(ca, [users.a, users.b, users.c], "as does a");
  });

  it("stores an object's mirror when users come or go, not when a user's connection count changes", async () => {
    const { room, users, clients } = await twoShardRoom();
    const [ca] = clients as [Client, Client, Client];
    await expectView(ca, [users.a, users.b, users.c], "a holds a, b and c");
    const stored = () =>
      runInDurableObject(objectOf(room, 0), (_i, state) => state.storage.kv.get<string>("rosterMirror"));
    // a held b and c since they joined here; the orderer's mirror gets them from shard 1's report
    // (within 250 ms, later under load), maybe one report each: wait for both to be stored.
    await until(async () => {
      const mirror = (await stored()) ?? "";
      return mirror.includes(String(users.b)) && mirror.includes(String(users.c));
    }, "b and c in the orderer's stored mirror");
    const before = await stored();
    expect(before).toContain(String(users.b));
    // b opens a second socket on shard 1: the orderer is told (its newcomers see 2 connections)...
    const second = await join(room, { sub: users.b });
    const [d] = usersIn(0, 2, 1, "d");
    await expectView(second.client, [users.a, users.b, users.c], "b's second socket holds everyone");
    let seen = 0;
    // Through shard 1's report (within 250 ms; allow for a loaded machine).
    const deadline = performance.now() + 8000;
    while (seen !== 2 && performance.now() < deadline) {
      await settle(100);
      const probe = await join(room, { sub: d });
      seen = probe.welcome.presence.find((p) => p.id === users.b)?.connections ?? 0;
      probe.client.close();
    }
    expect(seen).toBe(2);
    // ...but that is no new user: the stored list is not written again.
    expect(await stored()).toBe(before);
    // A new user on shard 1 is.
    const [e] = usersIn(1, 2, 1, "e");
    await join(room, { sub: e });
    await ca.waitFor(() => events(ca, "join").includes(String(e)), "a join for e");
    await until(async () => ((await stored()) ?? "").includes(String(e)), "e in the orderer's stored mirror");
  });
});
