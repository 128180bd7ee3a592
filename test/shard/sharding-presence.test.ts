/**
 * Presence, admin and direct messages in a room spread over several objects (docs/scaling.md):
 * room-wide counts, the roster over every object, kicks and DMs to the user's object.
 */
import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { type Client, mintToken, settle, until } from "../helpers";
import { objectOf, twoShardRoom } from "./support";

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
    // The orderer counts shard 1's sockets from its report (within 250 ms of b's and c's connects).
    await until(async () => (await objectOf(room, 0).info()).connections === 3, "3 connections counted");
    await settle(300);
    expect(await objectOf(room, 0).info()).toMatchObject({ connections: 3, shards: 2 });
  });

  it("lists the users of every object in the HTTP API's info, not only the orderer's", async () => {
    const { room, users } = await twoShardRoom();
    const info = await objectOf(room, 0).info();
    expect(info.users.map((u) => u.id).sort()).toEqual([users.a, users.b, users.c].map(String).sort());
    expect(info.usersNext).toBeUndefined();
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
