import { runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import {
  awaitingOf,
  join,
  mintToken,
  type Received,
  roomStub,
  runAlarmAfter,
  runHeartbeatRound,
  settle,
  uniqueRoom,
  until,
  withClockStill,
} from "./helpers";

describe("the heartbeat alarm", () => {
  it("is set when a room gets its first connection, for one heartbeat interval later", async () => {
    const room = uniqueRoom();
    const before = Date.now();
    const { client } = await join(room);
    const alarm = await runInDurableObject(roomStub(room), (_i, state) => state.storage.getAlarm());
    expect(alarm).toBeGreaterThanOrEqual(before + 30_000);
    expect(alarm).toBeLessThanOrEqual(Date.now() + 30_000);
    client.close();
  });

  it("sends a heartbeat frame to every live connection and schedules the next one", async () => {
    const room = uniqueRoom();
    const a = await join(room, { sub: "a" });
    const b = await join(room, { sub: "b" });
    expect(await runHeartbeatRound(room)).toBe(true);
    for (const c of [a, b]) {
      const beat = await c.client.next("heartbeat");
      expect(typeof beat.timestamp).toBe("number");
    }
    const next = await runInDurableObject(roomStub(room), (_i, state) => state.storage.getAlarm());
    expect(next).not.toBeNull();
    a.client.close();
    b.client.close();
  });

  it("is idempotent: a wake right after a round sends no second heartbeat", async () => {
    const room = uniqueRoom();
    const { client } = await join(room);
    const before = Date.now();
    await runHeartbeatRound(room);
    await runDurableObjectAlarm(roomStub(room));
    await client.next("heartbeat");
    await settle();
    expect(client.all("heartbeat")).toHaveLength(1);
    expect(client.closed).toBeUndefined();
    const next = await runInDurableObject(roomStub(room), (_i, state) => state.storage.getAlarm());
    expect(next).toBeGreaterThanOrEqual(before + 30_000);
    expect(next).toBeLessThanOrEqual(Date.now() + 30_000);
    client.close();
  });

  // The room shares the test's Date clock, so the alarm can run "75.3 s after connect" at once. The
  // runtime stamps auto-answered pings with its own clock, so activity happens 600 ms after connect
  // for real: at the alarm, silent connections are 75.3 s idle (> 75 s) and active ones at most 74.7 s.
  async function roomWithActivity(activity: (c: Awaited<ReturnType<typeof join>>) => Promise<void>) {
    const room = uniqueRoom();
    const silent = await join(room, { sub: "silent" });
    const active = await join(room, { sub: "active" });
    // Measured from when the room stamped the connections, however slow the machine is.
    const connectedAt = await runInDurableObject(roomStub(room), (_i, state) =>
      Math.max(
        ...state.getWebSockets().map((ws) => (ws.deserializeAttachment() as { connectedAt: number }).connectedAt),
      ),
    );
    await settle(600);
    const activeAt = Date.now();
    await activity(active);
    expect(activeAt - connectedAt).toBeGreaterThanOrEqual(500);
    expect(await runAlarmAfter(room, connectedAt + 75_300 - Date.now())).toBe(true);
    return { silent, active };
  }

  it("closes with 4408 a connection silent for longer than HEARTBEAT_TIMEOUT_MS, and announces the leave", async () => {
    const { silent, active } = await roomWithActivity(async (c) => {
      c.client.send({ type: "message", text: "still here" });
      await c.client.next("message");
    });
    expect(await silent.client.nextClose()).toEqual({ code: 4408, reason: "heartbeat timeout" });
    // The heartbeat goes out at once; the leave after PRESENCE_GRACE_MS.
    await active.client.next("heartbeat");
    expect(await active.client.next("presence")).toMatchObject({ event: "leave", user: { id: "silent" } });
    expect(active.client.closed).toBeUndefined();
    active.client.close();
  });

  it("counts an auto-answered ping as activity (the room does not even wake for it)", async () => {
    const { silent, active } = await roomWithActivity(async (c) => {
      c.client.send('{"type":"ping"}');
      await c.client.next("pong");
    });
    expect((await silent.client.nextClose()).code).toBe(4408);
    await active.client.next("heartbeat");
    expect(active.client.closed).toBeUndefined();
    active.client.close();
  });

  it("closes 4408 'not reading' a client that leaves a heartbeat unechoed past HEARTBEAT_TIMEOUT_MS, though it pings", async () => {
    const room = uniqueRoom();
    const reader = await join(room, { sub: "reader" });
    const stalled = await join(room, { sub: "stalled" });
    await runHeartbeatRound(room);
    const beat = await reader.client.next("heartbeat");
    reader.client.send(JSON.stringify(beat)); // the same text: the keys come back in the same order
    await stalled.client.next("heartbeat");
    await settle(600);
    // Both stay active with the runtime-answered ping; only the reader echoed.
    for (const c of [reader, stalled]) {
      c.client.send('{"type":"ping"}');
      await c.client.next("pong");
    }
    await until(async () => (await awaitingOf(room)).reader === undefined, "the reader's echo taken");
    expect(await awaitingOf(room)).toMatchObject({ reader: undefined, stalled: { since: beat.timestamp } });
    await runAlarmAfter(room, beat.timestamp + 75_300 - Date.now());
    expect(await stalled.client.nextClose()).toEqual({ code: 4408, reason: "not reading" });
    await reader.client.next("heartbeat");
    expect(reader.client.closed).toBeUndefined();
    reader.client.close();
  });

  it("counts only the exact echo of a heartbeat sent to that very connection", async () => {
    const room = uniqueRoom();
    const a = await join(room, { sub: "a" });
    const b = await join(room, { sub: "b" });
    expect(await a.client.next("presence")).toMatchObject({ event: "join", user: { id: "b" } });
    await runHeartbeatRound(room);
    const beatA = await a.client.next("heartbeat");
    const beatB = await b.client.next("heartbeat");
    expect(beatA.nonce).not.toBe(beatB.nonce);
    // Guesses and copies: the right timestamp with another nonce, none, or the other connection's.
    a.client.send({ type: "heartbeat", timestamp: beatA.timestamp, nonce: "0000000000000000" });
    a.client.send({ type: "heartbeat", timestamp: beatA.timestamp });
    a.client.send(JSON.stringify(beatB));
    a.client.send(` ${JSON.stringify(beatA)}`); // not byte for byte
    await settle(200);
    expect(a.client.pending()).toEqual([]); // taken as frames: no error either
    expect((await awaitingOf(room)).a).toMatchObject({ since: beatA.timestamp });
    // A client one heartbeat behind: the older echo shows it read that far, so only the newer one
    // is awaited, from its own time; then the newer echo clears it.
    await runHeartbeatRound(room);
    const newer = await b.client.next("heartbeat");
    expect((await awaitingOf(room)).b).toMatchObject({ since: beatB.timestamp, at: newer.timestamp });
    b.client.send(JSON.stringify(beatB));
    // Taken once the room has read it: wait for that, not for a fixed time.
    await until(async () => (await awaitingOf(room)).b?.since === newer.timestamp, "b's older echo taken");
    expect((await awaitingOf(room)).b).toMatchObject({ since: newer.timestamp, at: newer.timestamp });
    b.client.send(JSON.stringify(newer));
    await until(async () => (await awaitingOf(room)).b === undefined, "b's newer echo taken");
    expect(await awaitingOf(room)).toMatchObject({ a: { since: beatA.timestamp }, b: undefined });
    a.client.close();
    b.client.close();
  });

  it("takes a heartbeat echo even when the client's rate limit is spent", async () => {
    const room = uniqueRoom();
    const { client } = await join(room);
    await runHeartbeatRound(room);
    const beat = await client.next("heartbeat");
    // 60 frames empty the bucket (burst 40); the echo comes right behind them. The bucket refills
    // 20/s from the shared Date clock: hold it still, or a slow room refills it before the last ones.
    const answered = (f: Received[]) => f.filter((x) => x.type === "message" || x.type === "error");
    await withClockStill(async () => {
      for (let i = 0; i < 60; i++) client.send({ type: "message", text: `m${i}` });
      client.send(beat);
      await client.waitFor((f) => answered(f).length >= 60, "an answer to each message frame");
    });
    // Taken as the proof of reading (the room reads it right after the 60th frame): nothing awaited.
    await until(async () => Object.values(await awaitingOf(room)).every((a) => a === undefined), "the echo taken");
    await settle(200);
    const answers = answered(client.frames);
    // One answer per message frame and none for the echo: it was not refused, though the frames
    // just before it were.
    expect(answers).toHaveLength(60);
    expect(answers.at(-1)?.type).toBe("error");
    // Taken as the proof of reading: nothing awaited any more.
    expect(Object.values(await awaitingOf(room))).toEqual([undefined]);
    client.close();
  });

  it("keeps a client that echoes every heartbeat", async () => {
    const room = uniqueRoom();
    const { client } = await join(room);
    for (let i = 0; i < 3; i++) {
      await runHeartbeatRound(room);
      client.send(await client.next("heartbeat"));
    }
    await until(async () => Object.values(await awaitingOf(room)).every((a) => a === undefined), "the last echo taken");
    await runAlarmAfter(room, 60_000);
    await client.next("heartbeat");
    expect(client.closed).toBeUndefined();
    client.close();
  });

  it("closes every connection with 4408 when all are silent, and then sets no next alarm", async () => {
    const room = uniqueRoom();
    const a = await join(room, { sub: "a" });
    const b = await join(room, { sub: "b" });
    expect(await runAlarmAfter(room, 76_000)).toBe(true);
    expect((await a.client.nextClose()).code).toBe(4408);
    expect((await b.client.nextClose()).code).toBe(4408);
    expect(await runDurableObjectAlarm(roomStub(room))).toBe(false);
  });

  it("closes with 4401 a connection whose token expired, with no clock tolerance", async () => {
    const room = uniqueRoom();
    const now = Math.floor(Date.now() / 1000);
    const short = await join(room, { sub: "short", token: await mintToken({ sub: "short", exp: now + 5 }) });
    const long = await join(room, { sub: "long" });
    // 6 s later: past exp (tolerance would have allowed 30 s more at verification).
    await runAlarmAfter(room, 6_000);
    expect(await short.client.nextClose()).toEqual({ code: 4401, reason: "token expired" });
    expect(long.client.closed).toBeUndefined();
    expect((await long.client.next("presence")).event).toBe("leave");
    long.client.close();
  });

  it("closes with 4401 at the next frame a connection sends after its token expired", async () => {
    const room = uniqueRoom();
    const now = Math.floor(Date.now() / 1000);
    // Accepted thanks to the 30 s verification tolerance, but already expired for the live check.
    const { client } = await join(room, { token: await mintToken({ exp: now - 2 }) });
    client.send({ type: "message", text: "late" });
    expect((await client.nextClose()).code).toBe(4401);
  });

  it("sets no alarm for an empty room, and removes it when the last connection leaves", async () => {
    const room = uniqueRoom();
    expect(await runDurableObjectAlarm(roomStub(room))).toBe(false);
    const { client } = await join(room);
    client.close();
    await client.nextClose();
    await settle();
    const alarm = await runInDurableObject(roomStub(room), (_i, state) => state.storage.getAlarm());
    expect(alarm).toBeNull();
    expect(await runDurableObjectAlarm(roomStub(room))).toBe(false);
  });
});
