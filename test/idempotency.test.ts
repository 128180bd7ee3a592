import { runInDurableObject, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { History } from "../src/room/history";
import { contentHash } from "../src/room/message-ids";
import { errorOf, join, mintToken, roomStub, settle, uniqueRoom } from "./helpers";

async function post(room: string, body: unknown) {
  const token = await mintToken({ sub: "backend", name: "Backend", role: "admin" });
  return SELF.fetch(`https://rooms.test/api/rooms/${room}/messages`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
}

describe("message ids", () => {
  it("answers id_conflict, with the id, to a reused id with different content, and stores nothing", async () => {
    const room = uniqueRoom();
    const a = await join(room, { sub: "a" });
    const b = await join(room, { sub: "b" });
    await a.client.next("presence");
    a.client.send({ type: "message", id: "m1", text: "first" });
    expect(await a.client.next("ack")).toEqual({ type: "ack", id: "m1", seq: 1 });
    a.client.send({ type: "message", id: "m1", text: "second" });
    expect(await a.client.next("error")).toMatchObject({ type: "error", code: "id_conflict", id: "m1" });
    // data counts as content too
    a.client.send({ type: "message", id: "m1", text: "first", data: { x: 1 } });
    expect(await a.client.next("error")).toMatchObject({ code: "id_conflict", id: "m1" });
    a.client.send({ type: "message", id: "m2", text: "next" });
    expect(await a.client.next("ack")).toEqual({ type: "ack", id: "m2", seq: 2 });
    await b.client.waitFor((f) => f.filter((x) => x.type === "message").length >= 2, "two messages");
    await settle();
    expect(b.client.all("message").map((m) => [m.seq, m.text])).toEqual([
      [1, "first"],
      [2, "next"],
    ]);
    a.client.close();
    b.client.close();
  });

  it("acks the same id with the same content with the first seq, and sends nothing again", async () => {
    const room = uniqueRoom();
    const a = await join(room, { sub: "a" });
    a.client.send({ type: "message", id: "m1", text: "hi", data: { k: [1, 2] } });
    expect(await a.client.next("ack")).toMatchObject({ id: "m1", seq: 1 });
    a.client.send({ type: "message", id: "m1", text: "hi", data: { k: [1, 2] } });
    expect(await a.client.next("ack")).toMatchObject({ id: "m1", seq: 1 });
    // Another sender's id is its own.
    const b = await join(room, { sub: "b" });
    b.client.send({ type: "message", id: "m1", text: "mine" });
    expect(await b.client.next("ack")).toMatchObject({ id: "m1", seq: 2 });
    await settle();
    expect(a.client.all("message").map((m) => m.seq)).toEqual([1, 2]);
    a.client.close();
    b.client.close();
  });

  it("remembers an id for longer than HISTORY_LIMIT (20 here) messages", async () => {
    const room = uniqueRoom();
    const { client } = await join(room);
    client.send({ type: "message", id: "early", text: "x" });
    expect((await client.next("ack")).seq).toBe(1);
    for (let i = 0; i < 30; i++) client.send({ type: "message", text: `filler ${i}` });
    await client.waitFor((f) => f.filter((x) => x.type === "message").length >= 31, "31 messages");
    client.send({ type: "message", id: "early", text: "x" });
    expect(await client.next("ack")).toMatchObject({ id: "early", seq: 1 });
    client.send({ type: "message", id: "early", text: "y" });
    expect(await client.next("error")).toMatchObject({ code: "id_conflict", id: "early" });
    await settle();
    expect(client.all("message")).toHaveLength(31);
    client.close();
  });

  it("keeps ids with HISTORY_LIMIT=0, where no message is stored", async () => {
    const found = await runInDurableObject(roomStub(uniqueRoom("ids")), (_i, state) => {
      const history = new History(state.storage, 0);
      history.append({ seq: 1, ts: 5, userId: "u", messageId: "m1", frame: "{}", contentHash: 42 });
      const again = new History(state.storage, 0);
      return {
        latest: again.latestSeq,
        hit: again.findById("u", "m1"),
        other: again.findById("v", "m1"),
        replay: again.after(0).frames,
      };
    });
    expect(found).toEqual({ latest: 1, hit: { seq: 1, ts: 5, contentHash: 42 }, other: undefined, replay: [] });
  });

  it("still honours ids stored in the log by a room from before the id table", async () => {
    const found = await runInDurableObject(roomStub(uniqueRoom("legacy")), (_i, state) => {
      state.storage.sql.exec(`
        CREATE TABLE messages (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, user_id TEXT NOT NULL, msg_id TEXT, frame TEXT NOT NULL);
        CREATE UNIQUE INDEX messages_by_sender_id ON messages (user_id, msg_id) WHERE msg_id IS NOT NULL;
        CREATE TABLE room_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT INTO messages VALUES (1, 7, 'u', 'old', '{"type":"message","seq":1,"id":"old","text":"hi","ts":7}');
      `);
      const history = new History(state.storage, 20);
      const old = history.findById("u", "old");
      history.append({ seq: 2, ts: 8, userId: "u", messageId: "new", contentHash: 9, frame: "{}" });
      return { old, latest: new History(state.storage, 20).latestSeq, fresh: history.findById("u", "new") };
    });
    expect(found).toEqual({
      old: { seq: 1, ts: 7, contentHash: contentHash("hi", undefined) },
      latest: 2,
      fresh: { seq: 2, ts: 8, contentHash: 9 },
    });
  });
});

describe("POST /api/rooms/:room/messages with a reused id", () => {
  it("answers 409 id_conflict for different content, 200 with the first seq for the same", async () => {
    const room = uniqueRoom();
    const first = await post(room, { text: "deploy finished", id: "deploy-1" });
    expect(first.status).toBe(201);
    const same = await post(room, { text: "deploy finished", id: "deploy-1" });
    expect(same.status).toBe(200);
    expect(await same.json()).toEqual(await first.json());
    expect(await errorOf(await post(room, { text: "deploy failed", id: "deploy-1" }))).toMatchObject({
      status: 409,
      code: "id_conflict",
    });
  });
});
