/**
 * A small room stays one object (docs/scaling.md): with the default SHARD_MAX=1 nothing about
 * sharding runs. No shard is ever called, the orderer keeps no delivery links and writes no map.
 */
import { runInDurableObject, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { shardName, shardOf } from "../src/room/shard-map";
import { errorOf, join, mintToken, roomStub, uniqueRoom, upgrade } from "./helpers";

describe("an unsharded room", () => {
  it("takes no extra hop: no shard object is ever touched, the orderer has no shard state", async () => {
    const room = uniqueRoom("small");
    const clients = [];
    for (const sub of ["u1", "u2", "u3", "u4", "u5"]) clients.push((await join(room, { sub })).client);
    for (const [i, c] of clients.entries()) c.send({ type: "message", text: `m${i}`, id: `m${i}` });
    for (const c of clients) await c.waitFor((f) => f.filter((x) => x.type === "message").length === 5, "5 messages");
    const status = await roomStub(room).shardStatus();
    expect(status).toMatchObject({ role: "orderer", map: { n: 1, epoch: 0 }, counts: { connections: 5 } });
    // The orderer wrote no shard table; a shard's storage was never created (reading it creates nothing).
    const tables = (state: DurableObjectState) =>
      state.storage.sql
        .exec<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'")
        .toArray()
        .map((r) => r.name);
    expect(await runInDurableObject(roomStub(room), (_i, state) => tables(state))).not.toContain("shard_state");
    const shard = roomStub(shardName(room, 1));
    expect(await runInDurableObject(shard, (_i, state) => tables(state))).toEqual([]);
    for (const c of clients) c.close();
  });

  it("hashes users over shards with jump consistent hashing: n→n+1 moves only ~1/(n+1), all to the new shard", () => {
    const ids = Array.from({ length: 4000 }, (_, i) => `user-${i}`);
    for (const n of [1, 2, 4, 7]) {
      const moved = ids.filter((id) => shardOf(id, n) !== shardOf(id, n + 1));
      expect(moved.every((id) => shardOf(id, n + 1) === n)).toBe(true);
      expect(moved.length / ids.length).toBeGreaterThan(0.6 / (n + 1));
      expect(moved.length / ids.length).toBeLessThan(1.4 / (n + 1));
    }
  });

  it("pages its users through GET /api/rooms/:room/users (admin), and refuses a bad query", async () => {
    const room = uniqueRoom("roster");
    const clients = [];
    for (const sub of ["zed", "amy", "kim"]) clients.push((await join(room, { sub })).client);
    const admin = await mintToken({ sub: "ops", role: "admin" });
    const get = (query: string, token = admin) =>
      SELF.fetch(`https://rooms.test/api/rooms/${room}/users${query}`, {
        headers: { Authorization: `Bearer ${token}` },
      });
    const page = (await (await get("?limit=2")).json()) as { users: Array<{ id: string }>; next?: string };
    expect(page).toMatchObject({ users: [{ id: "amy" }, { id: "kim" }], next: "kim" });
    const rest = (await (await get("?after=kim")).json()) as { users: Array<{ id: string }>; next?: string };
    expect(rest).toEqual({ users: [expect.objectContaining({ id: "zed", connections: 1 })] });
    expect((await get("?limit=0")).status).toBe(400);
    expect((await get("", await mintToken({ sub: "m" }))).status).toBe(403);
    for (const c of clients) c.close();
  });

  it("never lets a client name a shard: a room id with ~ is refused at the gate and by the API", async () => {
    const token = await mintToken({ sub: "eve", role: "admin" });
    const shardOfLobby = encodeURIComponent(shardName("lobby", 1));
    const socket = await upgrade(shardOfLobby, { token });
    expect(await errorOf(socket)).toMatchObject({ status: 400, code: "invalid_request" });
    const api = await SELF.fetch(`https://rooms.test/api/rooms/${shardOfLobby}/messages`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    expect(api.status).toBe(400);
  });
});
