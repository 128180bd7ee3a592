import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { ServerFrame } from "../src/protocol";
import { BATCH_FRAME_MAX_BYTES, BATCH_FRAME_MAX_FRAMES } from "../src/room/batch-frames";
import { Connections } from "../src/room/connections";
import type { Room } from "../src/room/room";
import { Users } from "../src/room/users";
import { type Client, errorOf, join, mintToken, roomStub, settle, uniqueRoom, upgrade } from "./helpers";

const FROM = { id: "api", name: "API" };
const PONG = '{"type":"pong"}';

/** Publishes `texts` all at once inside the room: they are queued, and so stored, together. */
function publishTogether(room: string, texts: string[]): Promise<number[]> {
  return runInDurableObject(roomStub(room), async (instance: Room) => {
    const published = await Promise.all(texts.map((text) => instance.publish(room, FROM, { text })));
    return published.map((p) => p.seq);
  });
}

/** The text frames a client got that carry room messages, each read as the frames it holds. */
function messageTexts(client: Client): ServerFrame[][] {
  return client.texts
    .map((t) => JSON.parse(t) as ServerFrame | ServerFrame[])
    .map((f) => (Array.isArray(f) ? f : [f]))
    .filter((frames) => frames.some((f) => f.type === "message"));
}

const seqsOf = (frames: ServerFrame[]) => frames.map((f) => (f.type === "message" ? f.seq : f.type));

describe("batch frames (?batch=1)", () => {
  it("sends messages stored together to a batching connection as one array frame, one by one to a v1 one", async () => {
    const room = uniqueRoom("batch");
    const batching = await join(room, { sub: "b", batch: true });
    const plain = await join(room, { sub: "p" });
    expect(batching.welcome.batch).toBe(true);
    expect(plain.welcome.batch).toBeUndefined();

    const seqs = await publishTogether(room, ["one", "two", "three", "four", "five"]);
    expect(seqs).toEqual([1, 2, 3, 4, 5]);
    await batching.client.waitFor((f) => f.filter((x) => x.type === "message").length >= 5, "5 messages");
    await plain.client.waitFor((f) => f.filter((x) => x.type === "message").length >= 5, "5 messages");

    const batched = messageTexts(batching.client);
    expect(batched.map(seqsOf)).toEqual([[1, 2, 3, 4, 5]]);
    expect(batching.client.texts.find((t) => t.startsWith("["))).toMatch(/^\[\{"type":"message",.*\}\]$/);
    // The v1 connection: the same frames, byte for byte, each its own frame.
    const single = messageTexts(plain.client);
    expect(single.map(seqsOf)).toEqual([[1], [2], [3], [4], [5]]);
    expect(single.flat()).toEqual(batched.flat());
    batching.client.close();
    plain.client.close();
  });

  it("sends a single message as a plain frame, even to a batching connection", async () => {
    const room = uniqueRoom("batch");
    const batching = await join(room, { sub: "b", batch: true });
    await publishTogether(room, ["alone"]);
    await batching.client.next("message");
    expect(batching.client.texts.filter((t) => t.startsWith("["))).toEqual([]);
    batching.client.close();
  });

  it("cuts a run into batch frames of at most BATCH_FRAME_MAX_FRAMES frames, in seq order", async () => {
    const room = uniqueRoom("batch");
    const batching = await join(room, { sub: "b", batch: true });
    const texts = Array.from({ length: BATCH_FRAME_MAX_FRAMES + 20 }, (_, i) => `m${i}`);
    await publishTogether(room, texts);
    await batching.client.waitFor((f) => f.filter((x) => x.type === "message").length >= texts.length, "all");
    const frames = messageTexts(batching.client);
    // One run (fewer than a commit batch holds), cut at the bound.
    expect(frames.map((f) => f.length)).toEqual([BATCH_FRAME_MAX_FRAMES, 20]);
    expect(frames.flatMap(seqsOf)).toEqual(texts.map((_, i) => i + 1));
    batching.client.close();
  });

  it("cuts a run into batch frames of at most BATCH_FRAME_MAX_BYTES of frames", async () => {
    const room = uniqueRoom("batch");
    const batching = await join(room, { sub: "b", batch: true });
    const big = "x".repeat(BATCH_FRAME_MAX_BYTES / 3);
    await publishTogether(
      room,
      ["a", "b", "c", "d", "e"].map((c) => c + big),
    );
    await batching.client.waitFor((f) => f.filter((x) => x.type === "message").length >= 5, "5 messages");
    const lengths = batching.client.texts.filter((t) => t.includes('"type":"message"')).map((t) => t.length);
    for (const length of lengths) expect(length).toBeLessThanOrEqual(BATCH_FRAME_MAX_BYTES + 2);
    // Two frames of about a third of the bound fit, a third does not.
    expect(messageTexts(batching.client).map((f) => f.length)).toEqual([2, 2, 1]);
    expect(messageTexts(batching.client).flatMap(seqsOf)).toEqual([1, 2, 3, 4, 5]);
    batching.client.close();
  });

  it("never lets a message overtake a direct message or an ack queued before it", async () => {
    const room = uniqueRoom("batch");
    const batching = await join(room, { sub: "b", batch: true });
    const sender = await join(room, { sub: "s", batch: true });
    // Back to back, so that they are queued together: m1, m2, a direct message to b, m3, m4.
    sender.client.send({ type: "message", text: "m1", id: "1" });
    sender.client.send({ type: "message", text: "m2", id: "2" });
    sender.client.send({ type: "message", text: "dm", to: "b" });
    sender.client.send({ type: "message", text: "m3", id: "3" });
    sender.client.send({ type: "message", text: "m4", id: "4" });
    await batching.client.waitFor((f) => f.filter((x) => x.type === "message").length >= 5, "5 messages");
    const texts = batching.client.frames.flatMap((f) => (f.type === "message" ? [f.text] : []));
    expect(texts).toEqual(["m1", "m2", "dm", "m3", "m4"]);
    // The sender's own acks come after its messages, in order.
    await sender.client.waitFor((f) => f.filter((x) => x.type === "ack").length >= 4, "4 acks");
    const own = sender.client.frames.flatMap((f) =>
      f.type === "message" ? [`m${f.seq}`] : f.type === "ack" ? [`a${f.seq}`] : [],
    );
    for (const seq of [1, 2, 3, 4]) expect(own.indexOf(`m${seq}`)).toBeLessThan(own.indexOf(`a${seq}`));
    expect(own.filter((x) => x.startsWith("a"))).toEqual(["a1", "a2", "a3", "a4"]);
    batching.client.close();
    sender.client.close();
  });

  it("remembers the choice in the socket attachment, across an eviction", async () => {
    const room = uniqueRoom("batch");
    const batching = await join(room, { sub: "b", batch: true });
    const plain = await join(room, { sub: "p" });
    const flags = await runInDurableObject(roomStub(room), (_i, state) =>
      Object.fromEntries(
        state.getWebSockets().map((ws) => {
          const a = ws.deserializeAttachment() as { user: { id: string }; batch?: boolean };
          return [a.user.id, a.batch];
        }),
      ),
    );
    expect(flags).toEqual({ b: true, p: undefined });
    await evictDurableObject(roomStub(room));
    await publishTogether(room, ["x", "y", "z"]);
    await plain.client.waitFor((f) => f.filter((x) => x.type === "message").length >= 3, "3 messages");
    await batching.client.waitFor((f) => f.filter((x) => x.type === "message").length >= 3, "3 messages");
    expect(messageTexts(batching.client).map(seqsOf)).toEqual([[1, 2, 3]]);
    expect(messageTexts(plain.client).map(seqsOf)).toEqual([[1], [2], [3]]);
    batching.client.close();
    plain.client.close();
  });

  it("sends a resume replay to a batching connection in batch frames", async () => {
    const room = uniqueRoom("batch");
    await publishTogether(room, ["r1", "r2", "r3", "r4"]);
    const resumed = await join(room, { sub: "b", batch: true, since: 1 });
    expect(resumed.welcome.recovered).toBe(true);
    await resumed.client.waitFor((f) => f.filter((x) => x.type === "message").length >= 3, "3 replayed");
    expect(messageTexts(resumed.client).map(seqsOf)).toEqual([[2, 3, 4]]);
    const plain = await join(room, { sub: "p", since: 1 });
    await plain.client.waitFor((f) => f.filter((x) => x.type === "message").length >= 3, "3 replayed");
    expect(messageTexts(plain.client).map(seqsOf)).toEqual([[2], [3], [4]]);
    await settle(20);
    resumed.client.close();
    plain.client.close();
  });

  it("sends what a broadcast picks for each connection (presence announcements) as one batch frame", async () => {
    const room = uniqueRoom("batch-each");
    const batching = await join(room, { sub: "b", batch: true });
    const plain = await join(room, { sub: "p" });
    await batching.client.next("presence");
    const frames = ['{"type":"presence","event":"join","user":{"id":"x","name":"x"},"online":3}', PONG, PONG];
    // The room's own sockets, through a Connections over the object's state, as presence-feed.ts does.
    await runInDurableObject(roomStub(room), (_i, state) => {
      const users = new Users({
        messages: { perSecond: 1, burst: 1, maxStrikes: 1 },
        signals: { perSecond: 1, burst: 1, maxStrikes: 1 },
        connectsPerMinute: 1,
        replayBytesPerMinute: 1,
      });
      const settings = { rateLimitBurst: 1, maxUnreadBytes: 1 << 20, roomMaxQueuedBytes: 1 << 26 };
      const connections = new Connections(state, settings, { restored: () => {}, countedOut: () => {} }, users);
      connections.all();
      connections.broadcastEach(() => frames);
    });
    await batching.client.waitFor((f) => f.filter((x) => x.type === "pong").length >= 2, "2 pongs");
    await plain.client.waitFor((f) => f.filter((x) => x.type === "pong").length >= 2, "2 pongs");
    expect(batching.client.texts.at(-1)).toBe(`[${frames.join(",")}]`);
    expect(plain.client.texts.slice(-3)).toEqual(frames);
    batching.client.close();
    plain.client.close();
  });

  it.each(["yes", "2", "true", ""])("refuses ?batch=%s with 400 invalid_request naming batch", async (value) => {
    const room = uniqueRoom("batch");
    const response = await upgrade(room, { token: await mintToken(), query: `batch=${value}` });
    const error = await errorOf(response);
    expect(error).toMatchObject({ status: 400, code: "invalid_request" });
    expect(error.issues?.some((i) => i.startsWith("batch"))).toBe(true);
  });

  it("treats ?batch=0 as not asking", async () => {
    const room = uniqueRoom("batch");
    const response = await upgrade(room, { token: await mintToken(), query: "batch=0" });
    expect(response.status).toBe(101);
    response.webSocket?.accept();
    const welcome = await new Promise<ServerFrame>((resolve) =>
      response.webSocket?.addEventListener("message", (e) => resolve(JSON.parse(e.data as string))),
    );
    expect(welcome).toMatchObject({ type: "welcome" });
    expect(welcome.type === "welcome" && welcome.batch).toBeFalsy();
    response.webSocket?.close(1000, "bye");
  });
});
