import { SELF } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { join, mintToken, type Received, runAlarmAfter, settle, uniqueRoom } from "./helpers";

// The workerd tests run with MAX_UNREAD_BYTES = 1 MiB (vitest.config.ts): an early heartbeat once
// 256 KiB are unread; 4408 past 1 MiB once that heartbeat is 10 s late, and past 4 MiB at once;
// replays up to 256 KiB and history pages up to 128 KiB.
const PAD = "x".repeat(60_000);
const messages = (frames: Received[]) => frames.filter((f) => f.type === "message");
const seqs = (frames: Received[]) => messages(frames).map((m) => (m.type === "message" ? m.seq : undefined));
const oneTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

/** Runs `fn` with the Date clock (which the room shares) `ms` ahead. */
async function withClockAhead<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  vi.useFakeTimers({ toFake: ["Date"] });
  try {
    vi.setSystemTime(Date.now() + ms);
    return await fn();
  } finally {
    vi.useRealTimers();
  }
}

describe("a client that does not acknowledge what it reads", () => {
  /**
   * A room where a client that never echoes has ~1.4 MB unread (over the 1 MiB budget, under the
   * 4 MiB ceiling) while two that echo read everything: 24 messages of ~60 KB, four at a time.
   */
  async function roomWithOneBehind() {
    const room = uniqueRoom();
    const sender = await join(room, { sub: "sender" });
    const reader = await join(room, { sub: "reader" });
    const stalled = await join(room, { sub: "stalled" });
    sender.client.echoesHeartbeats = true;
    reader.client.echoesHeartbeats = true;
    for (let batch = 0; batch < 6; batch++) {
      for (let i = batch * 4; i < batch * 4 + 4; i++) sender.client.send({ type: "message", data: { i, pad: PAD } });
      await reader.client.waitFor((f) => messages(f).length >= batch * 4 + 4, `batch ${batch}`);
      await settle(50); // the echoes land before the next batch
    }
    expect(seqs(reader.client.frames)).toEqual(oneTo(24));
    // It was asked every ~256 KiB (every five messages), and is over the budget, but not late yet.
    const got = stalled.client.frames;
    const gaps = got.flatMap((f, i) => (f.type === "heartbeat" ? [messages(got.slice(0, i)).length] : []));
    expect(gaps).toEqual([5, 10, 15, 20]);
    expect(stalled.client.closed).toBeUndefined();
    return { room, sender, reader, stalled };
  }

  it("is closed 4408 'not reading' over MAX_UNREAD_BYTES at the first send once its heartbeat is 10 s late", async () => {
    const { sender, reader, stalled } = await roomWithOneBehind();
    await withClockAhead(10_500, async () => {
      sender.client.send({ type: "message", text: "and one more" });
      expect(await stalled.client.nextClose()).toEqual({ code: 4408, reason: "not reading" });
    });
    expect((await reader.client.next("presence")).user.id).toBe("stalled");
    await reader.client.waitFor((f) => messages(f).length >= 25, "the last message");
    expect(reader.client.closed).toBeUndefined();
    expect(sender.client.closed).toBeUndefined();
    sender.client.close();
    reader.client.close();
  });

  it("is closed by the alarm just the same when nothing more is sent, long before the 75 s rule", async () => {
    const { room, sender, reader, stalled } = await roomWithOneBehind();
    // 10.5 s on: far from the 75 s heartbeat timeout, past the 10 s grace.
    expect(await runAlarmAfter(room, 10_500)).toBe(true);
    expect(await stalled.client.nextClose()).toEqual({ code: 4408, reason: "not reading" });
    for (const c of [sender, reader]) {
      await c.client.next("heartbeat");
      expect(c.client.closed).toBeUndefined();
      c.client.close();
    }
  });

  it("closes nobody for a burst: a full rate-limit burst of large messages reaches every client", async () => {
    const room = uniqueRoom();
    const sender = await join(room, { sub: "sender" });
    const reader = await join(room, { sub: "reader" });
    const lazy = await join(room, { sub: "lazy" });
    sender.client.echoesHeartbeats = true;
    reader.client.echoesHeartbeats = true;
    // 40 × ~60 KB back to back: 2.4 MB, over the 1 MiB budget before any echo can come back.
    for (let i = 0; i < 40; i++) sender.client.send({ type: "message", data: { i, pad: PAD } });
    for (const c of [sender, reader, lazy]) {
      await c.client.waitFor((f) => messages(f).length >= 40, "the burst", 10_000);
      expect(seqs(c.client.frames)).toEqual(oneTo(40));
    }
    await settle(200);
    for (const c of [sender, reader, lazy]) expect(c.client.closed).toBeUndefined();
    for (const c of [sender, reader, lazy]) c.client.close();
  });

  it("is closed at once past four budgets unread, however recent its heartbeat", async () => {
    const room = uniqueRoom();
    const reader = await join(room, { sub: "reader" });
    const stalled = await join(room, { sub: "stalled" });
    reader.client.echoesHeartbeats = true;
    const token = await mintToken({ sub: "backend", role: "admin" });
    let posted = 0;
    // ~60 KB each through the HTTP API, until the room lets the stalled client go (4 MiB ≈ 70).
    while (stalled.client.closed === undefined && posted < 100) {
      const res = await SELF.fetch(`https://rooms.test/api/rooms/${room}/messages`, {
        method: "POST",
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ data: { n: posted, pad: PAD } }),
      });
      expect(res.status).toBe(201);
      posted++;
      await settle(5);
    }
    expect(await stalled.client.nextClose()).toEqual({ code: 4408, reason: "not reading" });
    expect(messages(stalled.client.frames).length).toBeGreaterThanOrEqual(68);
    expect(messages(stalled.client.frames).length).toBeLessThanOrEqual(70);
    // Seconds, not the 10 s grace: the whole run took far less.
    await reader.client.waitFor((f) => messages(f).length >= posted, "every message");
    expect(seqs(reader.client.frames)).toEqual(oneTo(posted));
    expect(reader.client.closed).toBeUndefined();
    reader.client.close();
  });

  it("keeps a resume replay and a history page well within the budget", async () => {
    const room = uniqueRoom();
    const sender = await join(room, { sub: "sender" });
    sender.client.echoesHeartbeats = true;
    for (let i = 0; i < 10; i++) {
      sender.client.send({ type: "message", data: { i, pad: PAD } });
      await sender.client.waitFor((f) => messages(f).length > i, `message ${i}`);
    }
    // A quarter of the budget: four ~60 KB messages, the newest, and the resume says what it missed.
    const late = await join(room, { sub: "late", since: 0 });
    expect(late.welcome.recovered).toBe(false);
    await late.client.waitFor((f) => messages(f).length >= 4, "the replay");
    await settle(100);
    expect(seqs(late.client.frames)).toEqual([7, 8, 9, 10]);
    // An eighth of it per history page: two messages, and more to page.
    late.client.send({ type: "history", before: 7 });
    const page = await late.client.next("history");
    expect(page.messages.map((m) => m.seq)).toEqual([5, 6]);
    expect(page.hasMore).toBe(true);
    sender.client.close();
    late.client.close();
  });
});
