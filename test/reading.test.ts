import { describe, expect, it } from "vitest";
import { join, type Received, settle, uniqueRoom } from "./helpers";

// The workerd tests run with MAX_UNREAD_BYTES = 1 MiB (vitest.config.ts): an early heartbeat once
// 256 KiB are unread, 4408 past 1 MiB, replays up to 256 KiB and history pages up to 128 KiB.
const PAD = "x".repeat(60_000);
const messages = (frames: Received[]) => frames.filter((f) => f.type === "message");

describe("a client that does not acknowledge what it reads", () => {
  it("is closed 4408 'not reading' past MAX_UNREAD_BYTES, while clients that echo get everything", async () => {
    const room = uniqueRoom();
    const sender = await join(room, { sub: "sender" });
    const reader = await join(room, { sub: "reader" });
    const stalled = await join(room, { sub: "stalled" });
    sender.client.echoesHeartbeats = true;
    reader.client.echoesHeartbeats = true;
    // 24 messages of ~60 KB (1.4 MB in all), four at a time, each batch read before the next.
    for (let batch = 0; batch < 6; batch++) {
      for (let i = batch * 4; i < batch * 4 + 4; i++) sender.client.send({ type: "message", data: { i, pad: PAD } });
      await reader.client.waitFor((f) => messages(f).length >= batch * 4 + 4, `batch ${batch}`);
      await settle(50); // the echoes land before the next batch
    }
    expect(messages(reader.client.frames).map((m) => m.type === "message" && m.seq)).toEqual(
      Array.from({ length: 24 }, (_, i) => i + 1),
    );

    expect(await stalled.client.nextClose()).toEqual({ code: 4408, reason: "not reading" });
    // It was asked once, early (after ~256 KiB), and got about 1 MiB before it was closed.
    const got = stalled.client.frames;
    const asked = got.findIndex((f) => f.type === "heartbeat");
    expect(messages(got.slice(0, asked))).toHaveLength(5);
    expect(got.filter((f) => f.type === "heartbeat")).toHaveLength(1);
    expect(messages(got).length).toBeGreaterThanOrEqual(16);
    expect(messages(got).length).toBeLessThanOrEqual(18);
    // The others were asked too, echoed, and are still here.
    expect(reader.client.all("heartbeat").length).toBeGreaterThanOrEqual(4);
    expect((await reader.client.next("presence")).user.id).toBe("stalled");
    expect(reader.client.closed).toBeUndefined();
    expect(sender.client.closed).toBeUndefined();
    sender.client.close();
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
    expect(messages(late.client.frames).map((m) => m.type === "message" && m.seq)).toEqual([7, 8, 9, 10]);
    // An eighth of it per history page: two messages, and more to page.
    late.client.send({ type: "history", before: 7 });
    const page = await late.client.next("history");
    expect(page.messages.map((m) => m.seq)).toEqual([5, 6]);
    expect(page.hasMore).toBe(true);
    sender.client.close();
    late.client.close();
  });
});
