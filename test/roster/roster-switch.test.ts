/**
 * PRESENCE_ROSTER_MAX in a room of one object (test/roster/vitest.config.ts: 3): the roster up to 3
 * users, counts only above (`occupancy`, at most once a second), the roster again at 2 or fewer.
 */
import { describe, expect, it } from "vitest";
import { type Client, join, settle, uniqueRoom } from "../helpers";
import { rosterView } from "../support/roster-view";

interface Loose {
  type: string;
  roster?: boolean;
  presence?: Array<{ id: string; connections: number; state?: Record<string, unknown> }>;
  online?: number;
  connections?: number;
  event?: string;
}
const framesOf = (c: Client, type: string) => (c.frames as unknown as Loose[]).filter((f) => f.type === type);

describe("the roster setting in a room of one object", () => {
  it("switches to counts above PRESENCE_ROSTER_MAX: no join/leave/update, welcome without the list, occupancy", async () => {
    const room = uniqueRoom("roster");
    const first = await Promise.all(["a", "b", "c"].map((sub) => join(room, { sub })));
    const [a] = first.map((j) => j.client) as [Client, Client, Client];
    // The three join at once, so a learns of b and c from its welcome or from joins, in either order.
    for (const { client } of first) {
      await client.waitFor(() => rosterView(client.frames).join() === "a,b,c", "a, b and c online");
    }
    // The fourth user: counts only from now on.
    const d = await join(room, { sub: "d" });
    expect(d.welcome.presence).toEqual([]);
    expect((d.welcome as unknown as Loose).roster).toBe(false);
    expect(await d.client.next("occupancy" as never)).toMatchObject({ online: 4, connections: 4 });
    for (const { client } of first) {
      await client.waitFor(() => framesOf(client, "roster").length === 1, "a roster frame");
      expect(framesOf(client, "roster")[0]).toEqual({ type: "roster", roster: false, presence: [] });
    }
    // A join, a presence state, a leave: counts only, and never a presence frame.
    const before = first.map(({ client }) => framesOf(client, "presence").length);
    const e = await join(room, { sub: "e" });
    a.send({ type: "presence", state: { typing: true } });
    await a.waitFor(() => framesOf(a, "occupancy").some((f) => f.online === 5), "occupancy 5", 5000);
    e.client.close();
    await a.waitFor(() => framesOf(a, "occupancy").at(-1)?.online === 4, "occupancy back to 4", 5000);
    await settle(300);
    expect(first.map(({ client }) => framesOf(client, "presence").length)).toEqual(before);
    expect(framesOf(d.client, "presence")).toEqual([]);
    for (const c of [...first.map((j) => j.client), d.client]) c.close();
  });

  it("sends the whole roster again once the room is back at or under the lower mark (hysteresis)", async () => {
    const room = uniqueRoom("hyst");
    const joined = [];
    for (const sub of ["a", "b", "c", "d"]) joined.push(await join(room, { sub }));
    const [a, b, c, d] = joined.map((j) => j.client) as [Client, Client, Client, Client];
    await a.waitFor(() => framesOf(a, "roster").length === 1, "the switch to counts");
    b.send({ type: "presence", state: { mood: "ok" } });
    d.close();
    // 3 users: at the setting, but the roster comes back only at 2.
    await a.waitFor(() => framesOf(a, "occupancy").at(-1)?.online === 3, "occupancy 3", 5000);
    expect(framesOf(a, "roster")).toHaveLength(1);
    c.close();
    await a.waitFor(() => framesOf(a, "roster").length === 2, "the roster again", 5000);
    const roster = framesOf(a, "roster")[1] as Loose;
    expect(roster.roster).toBe(true);
    expect(roster.presence?.map((p) => p.id).sort()).toEqual(["a", "b"]);
    expect(roster.presence?.find((p) => p.id === "b")?.state).toEqual({ mood: "ok" });
    // Back in roster mode: joins are announced again, and a newcomer gets the list.
    const e = await join(room, { sub: "e" });
    expect(e.welcome.presence.map((p) => p.id).sort()).toEqual(["a", "b", "e"]);
    expect((e.welcome as unknown as Loose).roster).toBeUndefined();
    await a.waitFor(() => framesOf(a, "presence").some((f) => f.event === "join"), "e's join");
    for (const x of [a, b, e.client]) x.close();
  });

  it("sends at most one occupancy frame a second, however fast people come and go", async () => {
    const room = uniqueRoom("rate");
    const watchers = [];
    for (const sub of ["w1", "w2", "w3", "w4"]) watchers.push((await join(room, { sub })).client);
    const w = watchers[0] as Client;
    const started = performance.now();
    for (let i = 0; i < 8; i++) {
      const x = await join(room, { sub: `x${i}` });
      x.client.close();
    }
    const elapsed = performance.now() - started;
    await settle(1200);
    const frames = framesOf(w, "occupancy");
    expect(frames.length).toBeGreaterThan(0);
    // 16 changes; at most one frame per second of the run, plus the first and the trailing one.
    expect(frames.length).toBeLessThanOrEqual(Math.ceil(elapsed / 1000) + 2);
    for (const x of watchers) x.close();
  });
});
