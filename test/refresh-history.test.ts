import { describe, expect, it } from "vitest";
import { join, mintToken, runAlarmAfter, runHeartbeatRound, uniqueRoom } from "./helpers";

const now = () => Math.floor(Date.now() / 1000);

describe("in-band token refresh", () => {
  it("moves the connection's expiry to the new token's, so it outlives its first token across an alarm", async () => {
    const room = uniqueRoom();
    const { client } = await join(room, { token: await mintToken({ exp: now() + 5 }) });
    const fresh = now() + 3600;
    client.send({ type: "auth", token: await mintToken({ exp: fresh }) });
    expect(await client.next("auth")).toEqual({ type: "auth", exp: fresh * 1000 });
    await runHeartbeatRound(room, 6_000);
    await client.next("heartbeat");
    expect(client.closed).toBeUndefined();
    client.close();
  });

  it("takes the new token's name and role", async () => {
    const room = uniqueRoom();
    const { client } = await join(room, { role: "readonly", name: "Old" });
    client.send({ type: "message", text: "x" });
    expect((await client.next("error")).code).toBe("forbidden");
    client.send({ type: "auth", token: await mintToken({ role: "member", name: "New" }) });
    await client.next("auth");
    client.send({ type: "message", text: "now I can" });
    expect((await client.next("message")).from).toEqual({ id: "alice", name: "New" });
    client.close();
  });

  it("answers invalid_token to a bad token and keeps the old expiry (then 4401 as before)", async () => {
    const room = uniqueRoom();
    const { client } = await join(room, { token: await mintToken({ exp: now() + 5 }) });
    client.send({ type: "auth", token: "garbage" });
    expect((await client.next("error")).code).toBe("invalid_token");
    client.send({ type: "auth", token: await mintToken({ ttl: -3600 }) });
    expect(await client.next("error")).toMatchObject({ code: "invalid_token", message: "the token has expired" });
    expect(client.closed).toBeUndefined();
    await runAlarmAfter(room, 6_000);
    expect((await client.nextClose()).code).toBe(4401);
  });

  it("closes with 4403 after a forbidden error when the new token is for another user", async () => {
    const room = uniqueRoom();
    const { client } = await join(room, { sub: "alice" });
    client.send({ type: "auth", token: await mintToken({ sub: "mallory" }) });
    expect((await client.next("error")).code).toBe("forbidden");
    expect((await client.nextClose()).code).toBe(4403);
  });

  it("closes with 4403 when the new token's rooms claim no longer covers the room", async () => {
    const room = uniqueRoom();
    const { client } = await join(room, { rooms: [room] });
    client.send({ type: "auth", token: await mintToken({ rooms: ["somewhere-else"] }) });
    expect((await client.next("error")).code).toBe("forbidden");
    expect((await client.nextClose()).code).toBe(4403);
  });

  it("answers frames in the order they came, an auth frame's answer included", async () => {
    const room = uniqueRoom();
    const { client } = await join(room);
    const rounds = 9; // 36 frames: under the burst of 40
    // Fresh tokens, so that each is verified (none comes from the verified-token cache).
    const tokens = await Promise.all(Array.from({ length: rounds }, (_, i) => mintToken({ name: `N${i}` })));
    const expected: string[] = [];
    for (let i = 0; i < rounds; i++) {
      // A message queued to be stored, a refresh (good or bad), more frames behind it.
      const isBad = i % 3 === 1;
      client.send({ type: "message", text: `before ${i}` });
      client.send({ type: "auth", token: isBad ? "garbage" : tokens[i] });
      client.send({ type: "message", text: `after ${i}` });
      client.send('{ "type" : "ping" }'); // not the exact text the runtime answers itself: the room does
      expected.push(`before ${i}`, isBad ? "invalid_token" : "auth", `after ${i}`, "pong");
    }
    await client.waitFor((f) => f.filter((x) => x.type === "pong").length === rounds, "every pong");
    const answers = client.frames
      .slice(1)
      .filter((f) => f.type !== "heartbeat" && f.type !== "presence")
      .map((f) => (f.type === "message" ? f.text : f.type === "error" ? f.code : f.type));
    expect(answers).toEqual(expected);
    client.close();
  });

  it("refuses a malformed auth frame with invalid_message", async () => {
    const { client } = await join(uniqueRoom());
    client.send({ type: "auth" });
    expect((await client.next("error")).code).toBe("invalid_message");
    client.send({ type: "auth", token: "t".repeat(20_000) });
    expect((await client.next("error")).code).toBe("invalid_message");
    client.close();
  });
});

describe("history over the socket", () => {
  async function roomWith(n: number) {
    const room = uniqueRoom();
    const { client } = await join(room, { sub: "writer" });
    for (let i = 1; i <= n; i++) client.send({ type: "message", text: `m${i}` });
    for (let i = 1; i <= n; i++) await client.next("message");
    return { room, client };
  }

  it("pages backward from the newest, each page in seq order, across more than one page", async () => {
    const { client } = await roomWith(12);
    client.send({ type: "history", limit: 5 });
    const newest = await client.next("history");
    expect(newest.messages.map((m) => m.seq)).toEqual([8, 9, 10, 11, 12]);
    expect(newest.hasMore).toBe(true);
    expect(newest.messages[0]).toMatchObject({ type: "message", text: "m8", from: { id: "writer" } });
    client.send({ type: "history", before: 8, limit: 5 });
    const older = await client.next("history");
    expect(older.messages.map((m) => m.seq)).toEqual([3, 4, 5, 6, 7]);
    expect(older.hasMore).toBe(true);
    client.send({ type: "history", before: 3, limit: 5 });
    const oldest = await client.next("history");
    expect(oldest.messages.map((m) => m.seq)).toEqual([1, 2]);
    expect(oldest.hasMore).toBe(false);
    client.close();
  });

  it("defaults to 50 messages, and a readonly connection may ask", async () => {
    const { room, client } = await roomWith(3);
    const reader = await join(room, { sub: "reader", role: "readonly" });
    reader.client.send({ type: "history" });
    const page = await reader.client.next("history");
    expect(page.messages.map((m) => m.seq)).toEqual([1, 2, 3]);
    expect(page.hasMore).toBe(false);
    client.close();
    reader.client.close();
  });

  it("answers an empty page in a room with no messages", async () => {
    const { client } = await join(uniqueRoom());
    client.send({ type: "history" });
    expect(await client.next("history")).toEqual({ type: "history", messages: [], hasMore: false });
    client.close();
  });

  it.each([
    [{ type: "history", limit: 0 }],
    [{ type: "history", limit: 101 }],
    [{ type: "history", limit: 2.5 }],
    [{ type: "history", before: 0 }],
    [{ type: "history", before: "9" }],
  ])("refuses %o with invalid_message", async (frame) => {
    const { client } = await join(uniqueRoom());
    client.send(frame);
    expect((await client.next("error")).code).toBe("invalid_message");
    client.close();
  });
});

describe("message ids are idempotency keys over the socket too", () => {
  it("acks a repeated id with the first seq and does not broadcast it again", async () => {
    const room = uniqueRoom();
    const alice = await join(room, { sub: "alice" });
    const bob = await join(room, { sub: "bob" });
    alice.client.send({ type: "message", text: "once", id: "retry-me" });
    expect(await alice.client.next("ack")).toEqual({ type: "ack", id: "retry-me", seq: 1 });
    alice.client.send({ type: "message", text: "once", id: "retry-me" });
    expect(await alice.client.next("ack")).toEqual({ type: "ack", id: "retry-me", seq: 1 });
    // Another user may use the same id: keys are per sender.
    bob.client.send({ type: "message", text: "mine", id: "retry-me" });
    expect(await bob.client.next("ack")).toEqual({ type: "ack", id: "retry-me", seq: 2 });
    await bob.client.waitFor((f) => f.filter((x) => x.type === "message").length >= 2, "two messages");
    await new Promise((r) => setTimeout(r, 50));
    expect(bob.client.all("message").map((m) => m.text)).toEqual(["once", "mine"]);
    alice.client.close();
    bob.client.close();
  });
});
