import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { TRIM_EVERY } from "../src/room/history";
import { join, roomStub, settle, uniqueRoom, withClockStill } from "./helpers";

describe("welcome and messages", () => {
  it("sends welcome first, with the user, the latest seq, presence and the heartbeat interval", async () => {
    const room = uniqueRoom();
    const { client, welcome } = await join(room, { sub: "alice", name: "Alice" });
    expect(welcome).toMatchObject({
      type: "welcome",
      room,
      user: { id: "alice", name: "Alice" },
      seq: 0,
      presence: [{ id: "alice", name: "Alice", connections: 1 }],
      heartbeatInterval: 30000,
    });
    expect(welcome.connectionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(welcome).not.toHaveProperty("recovered");
    client.close();
  });

  it("gives every connection its own server-chosen connection id", async () => {
    const room = uniqueRoom();
    const a = await join(room);
    const b = await join(room);
    expect(a.welcome.connectionId).not.toBe(b.welcome.connectionId);
    a.client.close();
    b.client.close();
  });

  it("broadcasts a message to every connection, the sender's included, with gapless seqs, and acks an id", async () => {
    const room = uniqueRoom();
    const alice = await join(room, { sub: "alice" });
    const bob = await join(room, { sub: "bob" });
    await alice.client.next("presence");
    alice.client.send({ type: "message", text: "one", id: "a1" });
    bob.client.send({ type: "message", data: { n: 2 } });
    alice.client.send({ type: "message", text: "three", data: [3], id: "a3" });
    for (const c of [alice.client, bob.client]) {
      const seen = [];
      for (let i = 0; i < 3; i++) seen.push(await c.next("message"));
      expect(seen.map((m) => m.seq)).toEqual([1, 2, 3]);
      expect(seen[0]).toMatchObject({ room, from: { id: "alice", name: "alice" }, text: "one", id: "a1" });
      expect(seen[1]).toMatchObject({ from: { id: "bob" }, data: { n: 2 } });
      expect(seen[1]).not.toHaveProperty("id");
      expect(seen[2]).toMatchObject({ text: "three", data: [3] });
      expect(typeof seen[0]?.ts).toBe("number");
    }
    await alice.client.waitFor((f) => f.filter((x) => x.type === "ack").length === 2, "two acks");
    const acks = alice.client.all("ack");
    expect(acks).toEqual([
      { type: "ack", id: "a1", seq: 1 },
      { type: "ack", id: "a3", seq: 3 },
    ]);
    expect(bob.client.all("ack")).toEqual([]);
    alice.client.close();
    bob.client.close();
  });

  it("answers a ping that is not the exact auto-answered text with a pong", async () => {
    const { client } = await join(uniqueRoom());
    client.send('{ "type" : "ping" }');
    expect(await client.next("pong")).toEqual({ type: "pong" });
    client.close();
  });

  it("auto-answers the exact ping text with a pong", async () => {
    const { client } = await join(uniqueRoom());
    client.send('{"type":"ping"}');
    expect(await client.next("pong")).toEqual({ type: "pong" });
    client.close();
  });
});

describe("presence", () => {
  it("announces join on a user's first connection and leave after the last one closes", async () => {
    const room = uniqueRoom();
    const watcher = await join(room, { sub: "watcher" });
    const bob1 = await join(room, { sub: "bob", name: "Bob" });
    expect(await watcher.client.next("presence")).toEqual({
      type: "presence",
      event: "join",
      user: { id: "bob", name: "Bob" },
      online: 2,
    });
    const bob2 = await join(room, { sub: "bob", name: "Bob" });
    expect(bob2.welcome.presence).toContainEqual({ id: "bob", name: "Bob", connections: 2 });
    bob1.client.close();
    await bob1.client.nextClose();
    await settle();
    expect(watcher.client.pending()).toEqual([]);
    bob2.client.close();
    expect(await watcher.client.next("presence")).toEqual({
      type: "presence",
      event: "leave",
      user: { id: "bob", name: "Bob" },
      online: 1,
    });
    watcher.client.close();
  });
});

describe("direct messages", () => {
  it("delivers to the recipient's connections and the sender's other connections only, with no seq", async () => {
    const room = uniqueRoom();
    const alice1 = await join(room, { sub: "alice" });
    const alice2 = await join(room, { sub: "alice" });
    const bob = await join(room, { sub: "bob" });
    const carol = await join(room, { sub: "carol" });
    await settle();

    alice1.client.send({ type: "message", to: "bob", text: "psst", id: "dm1" });
    const toBob = await bob.client.next("message");
    expect(toBob).toMatchObject({ to: "bob", text: "psst", from: { id: "alice" }, id: "dm1" });
    expect(toBob).not.toHaveProperty("seq");
    expect(await alice2.client.next("message")).toMatchObject({ to: "bob", text: "psst" });
    expect(await alice1.client.next("ack")).toEqual({ type: "ack", id: "dm1" });

    // The room's sequence is untouched: the next room message is seq 1, and the DM is not stored.
    alice1.client.send({ type: "message", text: "public" });
    expect((await carol.client.next("message")).seq).toBe(1);
    expect((await alice1.client.next("message")).seq).toBe(1);
    expect(carol.client.all("message")).toHaveLength(1);
    expect(alice1.client.all("message").map((m) => m.text)).toEqual(["public"]);
    const late = await join(room, { sub: "dave", since: 0 });
    expect(late.welcome.recovered).toBe(true);
    expect((await late.client.next("message")).text).toBe("public");
    await settle();
    expect(late.client.pending()).toEqual([]);
    for (const c of [alice1, alice2, bob, carol, late]) c.client.close();
  });

  it("answers unknown_recipient when the user has no connection in the room", async () => {
    const { client } = await join(uniqueRoom());
    client.send({ type: "message", to: "nobody", text: "hello?", id: "x1" });
    expect(await client.next("error")).toMatchObject({ code: "unknown_recipient", id: "x1" });
    client.close();
  });
});

describe("binary frames", () => {
  it("relays binary to the other connections, not back to the sender, and stores nothing", async () => {
    const room = uniqueRoom();
    const a = await join(room, { sub: "a" });
    const b = await join(room, { sub: "b" });
    await a.client.next("presence");
    a.client.sendRaw(new Uint8Array([1, 2, 3, 255]));
    expect([...(await b.client.next("bytes")).bytes]).toEqual([1, 2, 3, 255]);
    await settle();
    expect(a.client.pending()).toEqual([]);
    const late = await join(room, { sub: "c", since: 0 });
    expect(late.welcome).toMatchObject({ seq: 0, recovered: true });
    for (const c of [a, b, late]) c.client.close();
  });
});

describe("roles", () => {
  it("refuses text and binary from a readonly connection with forbidden, and keeps it open", async () => {
    const room = uniqueRoom();
    const reader = await join(room, { sub: "reader", role: "readonly" });
    const other = await join(room, { sub: "other" });
    reader.client.send({ type: "message", text: "hi", id: "r1" });
    expect(await reader.client.next("error")).toMatchObject({ code: "forbidden", id: "r1" });
    reader.client.sendRaw(new Uint8Array([1]));
    expect((await reader.client.next("error")).code).toBe("forbidden");
    reader.client.send({ type: "message", to: "other", text: "dm" });
    expect((await reader.client.next("error")).code).toBe("forbidden");
    // It still receives what others send.
    other.client.send({ type: "message", text: "to all" });
    expect((await reader.client.next("message")).text).toBe("to all");
    expect(reader.client.closed).toBeUndefined();
    reader.client.close();
    other.client.close();
  });
});

describe("bad frames", () => {
  it.each([
    ["text that is not JSON", "hello", "invalid_json"],
    ["truncated JSON", '{"type":"message"', "invalid_json"],
    ["an unknown type", '{"type":"shout","text":"x"}', "invalid_message"],
    ["no type", '{"text":"x"}', "invalid_message"],
    ["a JSON array", "[1,2]", "invalid_message"],
    ["a JSON string", '"message"', "invalid_message"],
    ["null", "null", "invalid_message"],
    ["a message with neither text nor data", '{"type":"message"}', "invalid_message"],
    ["a non-string text", '{"type":"message","text":5}', "invalid_message"],
    ["an id over 64 characters", JSON.stringify({ type: "message", text: "x", id: "i".repeat(65) }), "invalid_message"],
    ["an empty to", '{"type":"message","text":"x","to":""}', "invalid_message"],
    ["text over MAX_TEXT_LENGTH", JSON.stringify({ type: "message", text: "t".repeat(4001) }), "invalid_message"],
    ["data nested 40 deep", `{"type":"message","data":${"[".repeat(40)}${"]".repeat(40)}}`, "invalid_message"],
  ])("answers %s with an error frame and keeps the connection", async (_what, frame, code) => {
    const { client } = await join(uniqueRoom());
    client.send(frame);
    expect((await client.next("error")).code).toBe(code);
    client.send({ type: "message", text: "still here" });
    expect((await client.next("message")).text).toBe("still here");
    client.close();
  });

  it("echoes the client's id in the error of a message that fails the schema", async () => {
    const { client } = await join(uniqueRoom());
    client.send({ type: "message", id: "bad-1", text: 42 });
    expect(await client.next("error")).toMatchObject({ code: "invalid_message", id: "bad-1" });
    client.close();
  });

  it("accepts text of exactly MAX_TEXT_LENGTH characters", async () => {
    const { client } = await join(uniqueRoom());
    client.send({ type: "message", text: "t".repeat(4000) });
    expect((await client.next("message")).text).toHaveLength(4000);
    client.close();
  });

  it("stores and relays __proto__ and constructor keys as plain data, without polluting anything", async () => {
    const room = uniqueRoom();
    const { client } = await join(room);
    client.send(
      '{"type":"message","__proto__":{"role":"admin"},"data":{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}}',
    );
    const message = await client.next("message");
    expect(Object.hasOwn(message.data as object, "__proto__")).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const late = await join(room, { sub: "late", since: 0 });
    const replayed = await late.client.next("message");
    expect(JSON.stringify(replayed.data)).toBe('{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}');
    client.close();
    late.client.close();
  });

  it("accepts data nested 32 deep (the limit)", async () => {
    const { client } = await join(uniqueRoom());
    client.send(`{"type":"message","data":${"[".repeat(32)}${"]".repeat(32)}}`);
    expect((await client.next("message")).seq).toBe(1);
    client.close();
  });

  it("closes with 1009 a text frame over MAX_MESSAGE_BYTES, counting UTF-8 bytes", async () => {
    const room = uniqueRoom();
    const { client } = await join(room);
    const other = await join(room, { sub: "other" });
    // 22,000 three-byte characters: 66,000 bytes but only 22,000 UTF-16 units.
    client.send(JSON.stringify({ type: "message", data: "€".repeat(22_000) }));
    expect((await client.nextClose()).code).toBe(1009);
    expect((await other.client.next("presence")).event).toBe("leave");
    other.client.close();
  });

  it("closes with 1009 a binary frame over MAX_MESSAGE_BYTES, and relays nothing", async () => {
    const room = uniqueRoom();
    const { client } = await join(room);
    const other = await join(room, { sub: "other" });
    client.sendRaw(new Uint8Array(65_537));
    expect((await client.nextClose()).code).toBe(1009);
    expect((await other.client.next("presence")).event).toBe("leave");
    other.client.close();
  });
});

describe("rate limits", () => {
  it("answers rate_limited (with the frame's id) past the burst, then closes with 4429 after RATE_LIMIT_STRIKES refusals", async () => {
    const room = uniqueRoom();
    const { client } = await join(room);
    const other = await join(room, { sub: "other" });
    const started = performance.now();
    // The bucket refills 20/s from the shared Date clock: on a loaded machine the room works through
    // the flood slowly enough to refill a good part of it, and the close comes much later (past the
    // wait). Hold the clock still: the burst, then refusals until the 50th closes.
    const closed = await withClockStill(async () => {
      for (let i = 0; i < 200; i++) client.send({ type: "message", text: `m${i}`, id: `id-${i}` });
      return client.nextClose(5000);
    });
    const seconds = (performance.now() - started) / 1000;
    expect(closed.code).toBe(4429);
    const limited = client.all("error").filter((f) => f.code === "rate_limited");
    const delivered = client.all("message");
    // The 50th refusal closes instead of answering.
    expect(limited.length).toBe(49);
    const acked = new Set(client.all("ack").map((a) => a.id));
    for (const error of limited) {
      expect(error.id).toMatch(/^id-\d+$/);
      expect(acked.has(error.id as string)).toBe(false);
    }
    expect(delivered.length).toBeGreaterThanOrEqual(40);
    // The burst of 40, and what 20/s refilled while the room worked through the flood.
    expect(delivered.length).toBeLessThanOrEqual(40 + Math.ceil(20 * seconds));
    expect(delivered.length).toBeLessThan(200 - 49);
    // What was accepted is gapless, and the room goes on for the others.
    expect(delivered.map((m) => m.seq)).toEqual(delivered.map((_, i) => i + 1));
    other.client.send({ type: "message", text: "after" });
    let last = await other.client.next("message");
    while (last.text !== "after") last = await other.client.next("message");
    expect(last.seq).toBe(delivered.length + 1);
    other.client.close();
  });
});

describe("resume", () => {
  async function roomWith(n: number) {
    const room = uniqueRoom();
    const { client } = await join(room, { sub: "writer" });
    for (let i = 1; i <= n; i++) {
      client.send({ type: "message", text: `m${i}`, id: `w${i}` });
      await client.next("message");
      await client.next("ack");
    }
    client.close();
    return room;
  }

  it("replays stored messages after since, in order, before live ones, with recovered true", async () => {
    const room = await roomWith(5);
    const { client, welcome } = await join(room, { sub: "reader", since: 2 });
    expect(welcome).toMatchObject({ seq: 5, recovered: true });
    const replayed = [await client.next("message"), await client.next("message"), await client.next("message")];
    expect(replayed.map((m) => [m.seq, m.text])).toEqual([
      [3, "m3"],
      [4, "m4"],
      [5, "m5"],
    ]);
    client.close();
  });

  it("replays nothing and says recovered true for since equal to the latest seq", async () => {
    const room = await roomWith(2);
    const { client, welcome } = await join(room, { since: 2 });
    expect(welcome).toMatchObject({ seq: 2, recovered: true });
    await settle();
    expect(client.pending()).toEqual([]);
    client.close();
  });

  it("keeps only the newest HISTORY_LIMIT messages and says recovered false when a gap is unavoidable", async () => {
    const room = await roomWith(25);
    const rows = await runInDurableObject(roomStub(room), (_i, state) =>
      state.storage.sql.exec<{ n: number; lo: number }>("SELECT COUNT(*) AS n, MIN(seq) AS lo FROM messages").one(),
    );
    // Old rows are trimmed in batches; what clients see is the newest 20 (below).
    expect(rows.n).toBeGreaterThanOrEqual(20);
    expect(rows.n).toBeLessThanOrEqual(20 + TRIM_EVERY);
    const { client, welcome } = await join(room, { since: 0 });
    expect(welcome).toMatchObject({ seq: 25, recovered: false });
    const first = await client.next("message");
    expect(first.seq).toBe(6);
    client.close();
    const exact = await join(room, { since: 5 });
    expect(exact.welcome.recovered).toBe(true);
    exact.client.close();
  });

  it("says recovered false for a since ahead of the room (the room was reset)", async () => {
    const room = await roomWith(1);
    const { client, welcome } = await join(room, { since: 99 });
    expect(welcome).toMatchObject({ seq: 1, recovered: false });
    client.close();
  });
});

describe("the runtime's own ping answer", () => {
  it("is registered for the exact ping text, and stamps the socket without waking the room's handler", async () => {
    const room = uniqueRoom();
    const { client } = await join(room);
    const before = await runInDurableObject(roomStub(room), (_i, state) => {
      const pair = state.getWebSocketAutoResponse();
      const ws = state.getWebSockets()[0] as WebSocket;
      return {
        request: pair?.request,
        response: pair?.response,
        stamp: state.getWebSocketAutoResponseTimestamp(ws),
        attachment: JSON.stringify(ws.deserializeAttachment()),
      };
    });
    expect(before).toMatchObject({ request: '{"type":"ping"}', response: '{"type":"pong"}', stamp: null });
    client.send('{"type":"ping"}');
    await client.next("pong");
    const after = await runInDurableObject(roomStub(room), (_i, state) => {
      const ws = state.getWebSockets()[0] as WebSocket;
      return {
        stamp: state.getWebSocketAutoResponseTimestamp(ws),
        attachment: JSON.stringify(ws.deserializeAttachment()),
      };
    });
    expect(after.stamp).toBeInstanceOf(Date);
    expect(after.attachment).toBe(before.attachment);
    client.close();
  });
});

describe("binary rate limits", () => {
  it("counts binary frames against the rate limit: rate_limited, then 4429", async () => {
    const { client } = await join(uniqueRoom());
    // The clock held still, as for text frames: no refill however slowly the room works.
    const closed = await withClockStill(async () => {
      for (let i = 0; i < 200; i++) client.sendRaw(new Uint8Array([i]));
      return client.nextClose(5000);
    });
    expect(closed.code).toBe(4429);
    expect(client.all("error").filter((e) => e.code === "rate_limited")).toHaveLength(49);
  });
});

describe("unexpected failures", () => {
  it("closes with 1011 a connection whose stored state is unreadable after a wake, and logs it", async () => {
    const room = uniqueRoom();
    const victim = await join(room, { sub: "victim" });
    const other = await join(room, { sub: "other" });
    await runInDurableObject(roomStub(room), (_i, state) => {
      for (const ws of state.getWebSockets("u:victim")) ws.serializeAttachment({ garbage: true });
    });
    await evictDurableObject(roomStub(room));
    const errors = vi.spyOn(console, "error");
    other.client.send({ type: "message", text: "wake up" });
    expect((await victim.client.nextClose()).code).toBe(1011);
    expect((await other.client.next("message")).text).toBe("wake up");
    expect(errors.mock.calls.some((c) => String(c[0]).includes("attachment_invalid"))).toBe(true);
    errors.mockRestore();
    other.client.close();
    // Let the woken object finish before the file ends: it may still be loading modules.
    await other.client.nextClose();
    await settle(100);
  });

  it("closes with 1000 when the client closes normally, and the room goes on", async () => {
    const room = uniqueRoom();
    const a = await join(room, { sub: "a" });
    const b = await join(room, { sub: "b" });
    a.client.close(1000, "bye");
    expect(await a.client.nextClose()).toEqual({ code: 1000, reason: "bye" });
    b.client.send({ type: "message", text: "still on" });
    expect((await b.client.next("message")).text).toBe("still on");
    b.client.close();
  });
});
