import { evictDurableObject, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { join, mintToken, roomStub, settle, uniqueRoom } from "./helpers";

const inSeconds = (s: number) => Math.floor(Date.now() / 1000) + s;

describe("token expiry on a live connection", () => {
  it("closes with 4401 at exp, long before the next heartbeat (30 s here)", async () => {
    const room = uniqueRoom();
    const watcher = await join(room, { sub: "watcher" });
    const short = await join(room, { sub: "short", token: await mintToken({ sub: "short", exp: inSeconds(2) }) });
    const startedAt = performance.now();
    // Generous: the alarm is due in at most 2 s; a heartbeat round would be 30 s away.
    expect(await short.client.nextClose(15_000)).toEqual({ code: 4401, reason: "token expired" });
    expect(performance.now() - startedAt).toBeLessThan(20_000);
    await watcher.client.waitFor(
      (f) => f.some((x) => x.type === "presence" && x.event === "leave"),
      "the leave",
      5_000,
    );
    // That wake was for the expiry only: no heartbeat round ran, and the alarm waits for the next one.
    await settle(100);
    expect(watcher.client.all("heartbeat")).toEqual([]);
    const alarm = await runInDurableObject(roomStub(room), (_i, state) => state.storage.getAlarm());
    expect(alarm).toBeGreaterThan(Date.now() + 20_000);
    watcher.client.close();
  });

  it("knows an expiry wake from a heartbeat round after an eviction too", async () => {
    const room = uniqueRoom();
    const watcher = await join(room, { sub: "watcher" });
    const short = await join(room, { sub: "short", token: await mintToken({ sub: "short", exp: inSeconds(2) }) });
    await evictDurableObject(roomStub(room));
    expect((await short.client.nextClose(15_000)).code).toBe(4401);
    await settle(100);
    expect(watcher.client.all("heartbeat")).toEqual([]);
    expect(watcher.client.closed).toBeUndefined();
    watcher.client.close();
  });

  it("moves the alarm to a refreshed token's earlier exp", async () => {
    const room = uniqueRoom();
    const { client } = await join(room);
    client.send({ type: "auth", token: await mintToken({ exp: inSeconds(2) }) });
    await client.next("auth");
    expect(await client.nextClose(15_000)).toEqual({ code: 4401, reason: "token expired" });
  });
});
