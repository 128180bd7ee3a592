import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import {
  awaitingOf,
  join,
  mintToken,
  roomStub,
  runAlarmAfter,
  runHeartbeatRound,
  settle,
  uniqueRoom,
  until,
} from "./helpers";

describe("eviction and hibernation", () => {
  it("keeps every connection and its identity across an eviction, and seq continues", async () => {
    const room = uniqueRoom();
    const alice = await join(room, { sub: "alice", name: "Alice" });
    const bob = await join(room, { sub: "bob", name: "Bob", role: "readonly" });
    alice.client.send({ type: "message", text: "before", id: "b1" });
    await alice.client.next("ack");
    await bob.client.next("message");

    await evictDurableObject(roomStub(room));

    alice.client.send({ type: "message", text: "after", id: "a1" });
    const after = await bob.client.next("message");
    expect(after).toMatchObject({ seq: 2, text: "after", from: { id: "alice", name: "Alice" } });
    expect(await alice.client.next("ack")).toEqual({ type: "ack", id: "a1", seq: 2 });
    // The role survived too: bob is still read-only.
    bob.client.send({ type: "message", text: "nope" });
    expect((await bob.client.next("error")).code).toBe("forbidden");

    // Presence was rebuilt from the sockets: a newcomer sees both, and a leave is announced.
    const carol = await join(room, { sub: "carol" });
    expect(carol.welcome.presence.map((p) => p.id).sort()).toEqual(["alice", "bob", "carol"]);
    expect(carol.welcome.seq).toBe(2);
    expect(await alice.client.next("presence")).toMatchObject({ event: "join", user: { id: "carol" }, online: 3 });
    bob.client.close();
    expect(await alice.client.next("presence")).toMatchObject({ event: "leave", user: { id: "bob" }, online: 2 });
    alice.client.close();
    carol.client.close();
  });

  it("counts a user with two connections right after an eviction: leave only after the second closes", async () => {
    const room = uniqueRoom();
    const watcher = await join(room, { sub: "watcher" });
    const b1 = await join(room, { sub: "bob" });
    const b2 = await join(room, { sub: "bob" });
    await watcher.client.next("presence");
    await evictDurableObject(roomStub(room));
    b1.client.close();
    await b1.client.nextClose();
    watcher.client.send('{ "type": "ping" }');
    await watcher.client.next("pong");
    expect(watcher.client.all("presence").filter((p) => p.event === "leave")).toEqual([]);
    b2.client.close();
    expect(await watcher.client.next("presence")).toMatchObject({ event: "leave", user: { id: "bob" }, online: 1 });
    watcher.client.close();
  });

  it("keeps direct messages working after an eviction (tags survive)", async () => {
    const room = uniqueRoom();
    const alice = await join(room, { sub: "alice" });
    const bob = await join(room, { sub: "bob" });
    await evictDurableObject(roomStub(room));
    alice.client.send({ type: "message", to: "bob", text: "still there?" });
    expect(await bob.client.next("message")).toMatchObject({ to: "bob", text: "still there?" });
    alice.client.close();
    bob.client.close();
  });

  it("keeps the token expiry across an eviction: the alarm closes with 4401", async () => {
    const room = uniqueRoom();
    const exp = Math.floor(Date.now() / 1000) + 5;
    const { client } = await join(room, { token: await mintToken({ exp }) });
    await evictDurableObject(roomStub(room));
    await runAlarmAfter(room, 6_000);
    expect((await client.nextClose()).code).toBe(4401);
  });

  it("takes an echo sent after an eviction, and still closes 'not reading' a heartbeat left unechoed across it", async () => {
    const room = uniqueRoom();
    const reader = await join(room, { sub: "reader" });
    const stalled = await join(room, { sub: "stalled" });
    await runHeartbeatRound(room);
    const beat = await reader.client.next("heartbeat");
    await stalled.client.next("heartbeat");
    await evictDurableObject(roomStub(room));
    // The awaited heartbeat lives in the attachment: its echo is recognised by the new instance.
    reader.client.send(JSON.stringify(beat));
    await until(async () => (await awaitingOf(room)).reader === undefined, "the reader's echo taken");
    expect(await awaitingOf(room)).toMatchObject({ reader: undefined, stalled: { since: beat.timestamp } });
    await settle(500);
    for (const c of [reader, stalled]) {
      c.client.send('{"type":"ping"}');
      await c.client.next("pong");
    }
    await evictDurableObject(roomStub(room));
    await runAlarmAfter(room, beat.timestamp + 75_300 - Date.now());
    expect(await stalled.client.nextClose()).toEqual({ code: 4408, reason: "not reading" });
    await reader.client.next("heartbeat");
    expect(reader.client.closed).toBeUndefined();
    reader.client.close();
  });

  it("does not count a connection it closed before an eviction in again afterwards", async () => {
    const room = uniqueRoom();
    const watcher = await join(room, { sub: "watcher" });
    const big = await join(room, { sub: "big" });
    big.client.sendRaw(new Uint8Array(70_000));
    expect((await big.client.nextClose()).code).toBe(1009);
    await watcher.client.next("presence");
    // Whether or not the runtime still lists the closed socket, a wake must not count it in.
    const listed = await runInDurableObject(roomStub(room), (_i, state) =>
      state.getWebSockets("u:big").map((ws) => (ws.deserializeAttachment() as { closing?: boolean }).closing),
    );
    expect(listed.every((closing) => closing === true)).toBe(true);
    await evictDurableObject(roomStub(room));
    const late = await join(room, { sub: "late" });
    expect(late.welcome.presence.map((p) => p.id).sort()).toEqual(["late", "watcher"]);
    watcher.client.close();
    late.client.close();
  });

  it("keeps attachments small and free of the token", async () => {
    const room = uniqueRoom();
    const token = await mintToken({ name: "N".repeat(64), sub: "s".repeat(128) });
    const { client } = await join(room, { token });
    const attachments = await runInDurableObject(roomStub(room), (_i, state) =>
      state.getWebSockets().map((ws) => JSON.stringify(ws.deserializeAttachment())),
    );
    expect(attachments).toHaveLength(1);
    expect(attachments[0]?.length).toBeLessThan(1024);
    expect(attachments[0]).not.toContain(token.split(".")[2]);
    client.close();
  });
});
