import { evictDurableObject, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { Coalescer, type Schedule } from "../src/room/coalesce";
import { join, mintToken, roomStub, settle, uniqueRoom } from "./helpers";

describe("presence state", () => {
  it("announces a state as a presence update to everyone, and shows it in a newcomer's welcome", async () => {
    const room = uniqueRoom();
    const alice = await join(room, { sub: "alice", name: "Alice" });
    const bob = await join(room, { sub: "bob", name: "Bob" });
    alice.client.send({ type: "presence", state: { status: "busy" } });
    const update = await bob.client.next("presence");
    expect(update).toEqual({
      type: "presence",
      event: "update",
      user: { id: "alice", name: "Alice" },
      state: { status: "busy" },
      online: 2,
    });
    // The sender's connection hears it too.
    expect(await alice.client.next("presence")).toMatchObject({ event: "join" });
    expect(await alice.client.next("presence")).toEqual(update);
    const carol = await join(room, { sub: "carol" });
    const entry = carol.welcome.presence.find((p) => p.id === "alice");
    expect(entry).toEqual({ id: "alice", name: "Alice", connections: 1, state: { status: "busy" } });
    expect(carol.welcome.presence.find((p) => p.id === "bob")?.state).toBeUndefined();
    for (const c of [alice, bob, carol]) c.client.close();
  });

  it("keeps one state per user: the last one set on any of its connections wins", async () => {
    const room = uniqueRoom();
    const a1 = await join(room, { sub: "alice" });
    const a2 = await join(room, { sub: "alice" });
    const bob = await join(room, { sub: "bob" });
    a1.client.send({ type: "presence", state: { status: "busy" } });
    await bob.client.waitFor((f) => f.some((x) => x.type === "presence" && x.event === "update"), "an update");
    await settle(150);
    a2.client.send({ type: "presence", state: { status: "away" } });
    await bob.client.waitFor(
      (f) => f.some((x) => x.type === "presence" && x.event === "update" && x.state?.status === "away"),
      "the second update",
    );
    const late = await join(room, { sub: "carol" });
    expect(late.welcome.presence.find((p) => p.id === "alice")).toMatchObject({
      connections: 2,
      state: { status: "away" },
    });
    for (const c of [a1, a2, bob, late]) c.client.close();
  });

  it("coalesces: 60 changes in a second cost an observer at most about 11 updates, and the last state wins", async () => {
    const room = uniqueRoom();
    const alice = await join(room, { sub: "alice" });
    const bob = await join(room, { sub: "bob" });
    const started = performance.now();
    for (let i = 1; i <= 60; i++) {
      alice.client.send({ type: "presence", state: { x: i } });
      await settle(16);
    }
    await bob.client.waitFor(
      (f) => f.some((x) => x.type === "presence" && x.event === "update" && x.state?.x === 60),
      "the last state",
      5000,
    );
    const spanMs = performance.now() - started;
    await settle(300);
    const updates = bob.client.all("presence").filter((p) => p.event === "update");
    // One at once, then at most one per 100 ms while the changes kept coming (about a second here,
    // longer on a busy machine): bounded by that time, not by the number of changes.
    expect(updates.length).toBeLessThanOrEqual(Math.ceil(spanMs / 100) + 1);
    expect(updates.at(-1)?.state).toEqual({ x: 60 });
    const xs = updates.map((u) => u.state?.x as number);
    expect(xs).toEqual([...xs].sort((p, q) => p - q));
    for (const c of [alice, bob]) c.client.close();
  });

  it("answers invalid_message to a state over PRESENCE_STATE_MAX_BYTES or not an object", async () => {
    const { client } = await join(uniqueRoom());
    client.send({ type: "presence", state: { note: "x".repeat(1100) } });
    expect((await client.next("error")).code).toBe("invalid_message");
    client.send({ type: "presence", state: [1, 2] });
    expect((await client.next("error")).code).toBe("invalid_message");
    client.send({ type: "presence", state: "busy" });
    expect((await client.next("error")).code).toBe("invalid_message");
    client.send({ type: "presence", state: { note: "x".repeat(1000) } });
    expect(await client.next("presence")).toMatchObject({ event: "update" });
    expect(client.closed).toBeUndefined();
    client.close();
  });

  it("refuses a state from a readonly connection with forbidden", async () => {
    const room = uniqueRoom();
    const viewer = await join(room, { sub: "viewer", role: "readonly" });
    viewer.client.send({ type: "presence", state: { status: "busy" } });
    expect((await viewer.client.next("error")).code).toBe("forbidden");
    viewer.client.close();
  });

  it("takes no token from the message buckets", async () => {
    const room = uniqueRoom();
    const alice = await join(room, { sub: "alice" });
    for (let i = 0; i < 200; i++) alice.client.send({ type: "presence", state: { i } });
    for (let i = 0; i < 40; i++) alice.client.send({ type: "message", text: `m${i}`, id: `m${i}` });
    await alice.client.waitFor((f) => f.filter((x) => x.type === "ack").length === 40, "40 acks", 10_000);
    expect(alice.client.all("error")).toEqual([]);
    alice.client.close();
  });

  it("keeps the state across an eviction (it lives in the socket attachments)", async () => {
    const room = uniqueRoom();
    const alice = await join(room, { sub: "alice" });
    const bob = await join(room, { sub: "bob" });
    alice.client.send({ type: "presence", state: { status: "away" } });
    await bob.client.next("presence");
    await evictDurableObject(roomStub(room));
    const carol = await join(room, { sub: "carol" });
    expect(carol.welcome.presence.find((p) => p.id === "alice")?.state).toEqual({ status: "away" });
    for (const c of [alice, bob, carol]) c.client.close();
  });

  it("forgets the state once its user has left: a later connection starts without one", async () => {
    const room = uniqueRoom();
    const watcher = await join(room, { sub: "watcher" });
    const alice = await join(room, { sub: "alice" });
    alice.client.send({ type: "presence", state: { status: "busy" } });
    await watcher.client.waitFor((f) => f.some((x) => x.type === "presence" && x.event === "update"), "the update");
    alice.client.close();
    await watcher.client.waitFor((f) => f.some((x) => x.type === "presence" && x.event === "leave"), "the leave");
    const again = await join(room, { sub: "alice" });
    expect(again.welcome.presence.find((p) => p.id === "alice")?.state).toBeUndefined();
    for (const c of [watcher, again]) c.client.close();
  });

  it("shows states in the HTTP API's room info", async () => {
    const room = uniqueRoom();
    const alice = await join(room, { sub: "alice", name: "Alice" });
    alice.client.send({ type: "presence", state: { status: "busy" } });
    await alice.client.waitFor((f) => f.some((x) => x.type === "presence" && x.event === "update"), "the update");
    const token = await mintToken({ sub: "backend", role: "admin" });
    const res = await SELF.fetch(`https://rooms.test/api/rooms/${room}`, {
      headers: { Authorization: `Bearer ${token}` },
    });
    expect(((await res.json()) as { users: unknown[] }).users).toEqual([
      { id: "alice", name: "Alice", connections: 1, state: { status: "busy" } },
    ]);
    alice.client.close();
  });
});

describe("Coalescer", () => {
  function fakeClock() {
    let now = 0;
    const timers: Array<{ at: number; run: () => void; live: boolean }> = [];
    const schedule: Schedule = (run, ms) => {
      const timer = { at: now + ms, run, live: true };
      timers.push(timer);
      return () => {
        timer.live = false;
      };
    };
    const advance = (to: number) => {
      for (;;) {
        const next = timers.filter((t) => t.live && t.at <= to).sort((a, b) => a.at - b.at)[0];
        if (next === undefined) break;
        now = next.at;
        next.live = false;
        next.run();
      }
      now = to;
    };
    return { schedule, advance, now: () => now };
  }

  it("sends 60 updates in a second as at most 11, the last value last", () => {
    const clock = fakeClock();
    const sent: number[] = [];
    const c = new Coalescer<string, number>(100, (_, value) => sent.push(value), { schedule: clock.schedule });
    const realNow = Date.now;
    Date.now = clock.now;
    try {
      for (let i = 1; i <= 60; i++) {
        clock.advance(Math.round((i - 1) * (1000 / 60)));
        c.push("alice", i, clock.now());
      }
      clock.advance(2000);
    } finally {
      Date.now = realNow;
    }
    expect(sent.length).toBeLessThanOrEqual(11);
    expect(sent[0]).toBe(1);
    expect(sent.at(-1)).toBe(60);
  });

  it("sends a quiet key's update at once, and keys apart from each other", () => {
    const clock = fakeClock();
    const sent: string[] = [];
    const c = new Coalescer<string, string>(100, (k, v) => sent.push(`${k}=${v}`), { schedule: clock.schedule });
    c.push("a", "1", 0);
    c.push("b", "1", 0);
    expect(sent).toEqual(["a=1", "b=1"]);
    c.forget("a");
    c.push("a", "2", 10);
    expect(sent).toEqual(["a=1", "b=1", "a=2"]);
  });
});
