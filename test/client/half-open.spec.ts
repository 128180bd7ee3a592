/**
 * RoomClient on a half-open link: a TCP proxy between it and `wrangler dev` stops forwarding without
 * closing anything. Every send is then either delivered exactly once, in order, once the link is
 * back, or rejected with its id when the app's deadline passes first. The room's history (HTTP API)
 * is the judge of what was stored.
 */
import { afterEach, describe, expect, it } from "vitest";
import type { RoomClientError, SendResult } from "../../src/client/index";
import { BlackHoleProxy } from "./black-hole-proxy";
import { BASE_URL, closeClients, makeClient, mintToken, sleep, uniqueRoom, until } from "./helpers";

let proxy: BlackHoleProxy | undefined;

afterEach(async () => {
  closeClients();
  await proxy?.close();
  proxy = undefined;
});

/** Quick to notice a dead link, quick to retry: the test server pings every second. */
const FAST = {
  pongTimeoutMs: 2_000,
  ackTimeoutMs: 3_000,
  connectTimeoutMs: 3_000,
  reconnect: { initialDelayMs: 200, maxDelayMs: 1_000 },
};

interface Stored {
  seq: number;
  id?: string;
  from: { id: string };
  text?: string;
}

async function history(room: string): Promise<Stored[]> {
  const token = await mintToken("auditor", { role: "admin", rooms: [room] });
  const response = await fetch(`${BASE_URL}/api/rooms/${room}/messages?since=0&limit=100`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  expect(response.status).toBe(200);
  return ((await response.json()) as { messages: Stored[] }).messages;
}

/** Polls the room's history until it holds `count` messages. */
async function untilStored(room: string, count: number): Promise<void> {
  let stored = 0;
  const poll = async () => {
    stored = (await history(room)).length;
  };
  await poll();
  while (stored < count) {
    await sleep(100);
    await poll();
  }
}

type Outcome = { ok: SendResult } | { error: RoomClientError };
const settle = (promise: Promise<SendResult>): Promise<Outcome> =>
  promise.then(
    (ok) => ({ ok }),
    (error: RoomClientError) => ({ error }),
  );

describe("RoomClient on a half-open link", () => {
  it("delivers every send exactly once, in order, after the link comes back", async () => {
    proxy = await BlackHoleProxy.start(BASE_URL);
    const room = uniqueRoom("halfopen");
    const { client, log } = makeClient({ ...FAST, url: proxy.url, room, token: () => mintToken("alice") });
    await log.wait("welcome", () => true, "the welcome");
    const ids = Array.from({ length: 20 }, (_, i) => `m${i + 1}`);
    const sends: Promise<Outcome>[] = [];
    const send = (i: number) => sends.push(settle(client.send(`text ${i + 1}`, { id: ids[i] })));

    for (let i = 0; i < 5; i++) send(i);
    await Promise.all(sends);
    // First only the way back goes dark: these reach the room and are stored, their acks are lost.
    proxy.isForwardingDown = false;
    for (let i = 5; i < 10; i++) send(i);
    await untilStored(room, 10);
    // Then both ways: these never reach the room on this connection.
    proxy.blackHole();
    for (let i = 10; i < 20; i++) send(i);

    await log.wait("retry", (r) => r.reason === "heartbeat" || r.reason === "ack_timeout", "the dead link noticed");
    const welcomes = log.all("welcome").length;
    proxy.restore();

    const outcomes = await Promise.all(sends);
    expect(outcomes.filter((o) => "error" in o)).toEqual([]);
    expect(log.all("welcome").length).toBeGreaterThan(welcomes);
    const stored = await history(room);
    expect(stored.map((m) => m.id)).toEqual(ids);
    expect(stored.map((m) => m.seq)).toEqual(ids.map((_, i) => i + 1));
    // Each send resolved with the seq its message was stored under.
    expect(outcomes.map((o) => ("ok" in o ? o.ok.seq : undefined))).toEqual(stored.map((m) => m.seq));
    // The client's own view: each message once, in order.
    await until(() => log.all("message").length >= 20, "all 20 messages seen by alice");
    expect(log.all("message").map((m) => m.id)).toEqual(ids);
  }, 90_000);

  it("rejects every unacknowledged send with its id when the link never comes back in time", async () => {
    proxy = await BlackHoleProxy.start(BASE_URL);
    const room = uniqueRoom("blackhole");
    const { client, log } = makeClient({
      ...FAST,
      sendDeadlineMs: 8_000,
      url: proxy.url,
      room,
      token: () => mintToken("alice"),
    });
    await log.wait("welcome", () => true, "the welcome");
    await client.send("before", { id: "before" });

    proxy.blackHole();
    const written = ["w1", "w2", "w3"].map((id) => settle(client.send(id, { id })));
    await log.wait("retry", () => true, "the dead link noticed");
    // Sent while the client is reconnecting: queued, never written.
    const queued = ["q1", "q2"].map((id) => settle(client.send(id, { id })));

    const outcomes = await Promise.all([...written, ...queued]);
    const errors = outcomes.map((o) => ("error" in o ? o.error : undefined));
    expect(errors.map((e) => [e?.code, e?.id, e?.wasWritten])).toEqual([
      ["send_timeout", "w1", true],
      ["send_timeout", "w2", true],
      ["send_timeout", "w3", true],
      ["send_timeout", "q1", false],
      ["send_timeout", "q2", false],
    ]);
    expect(client.state).not.toBe("closed");

    // The link comes back: the client reconnects, and writes none of the given-up sends again.
    const from = log.events.length;
    proxy.restore();
    await log.wait("welcome", () => true, "a welcome after the link is back", { from, timeoutMs: 20_000 });
    await client.send("after", { id: "after" });
    expect((await history(room)).map((m) => m.id)).toEqual(["before", "after"]);
  }, 90_000);
});
