/**
 * RoomClient in Node (with `ws`) against the real Worker in `wrangler dev`, whose heartbeat runs
 * every second here. Drops are made for real: the client's socket is terminated, muted or made to
 * lose frames, or the server closes it (token expiry, kick).
 */
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { RoomClientError, type RoomClientOptions } from "../../src/client/index";
import { freePort, HOST } from "../support/wrangler-server";
import { TEST_HEARTBEAT_INTERVAL_MS } from "./global-setup";
import { BASE_URL, closeClients, makeClient, mintToken, SocketLab, sleep, uniqueRoom, until } from "./helpers";

const WS_BASE = BASE_URL.replace(/^http/, "ws");
const inSeconds = (s: number) => Math.floor(Date.now() / 1000) + s;

afterEach(() => closeClients());

/** Alice under test, Bob a second client in the same room; both welcomed. */
async function twoClients(what: string, aliceOptions: Partial<RoomClientOptions> = {}) {
  const room = uniqueRoom(what);
  const alice = makeClient({ room, token: await mintToken("alice", { name: "Alice" }), ...aliceOptions });
  await alice.log.wait("welcome", () => true, "alice's welcome");
  const bob = makeClient({ room, token: await mintToken("bob", { name: "Bob" }) });
  await bob.log.wait("welcome", () => true, "bob's welcome");
  return { room, alice, bob };
}

const seqsOf = (messages: { seq?: number }[]) => messages.map((m) => m.seq);

describe("RoomClient against wrangler dev", () => {
  it("offers the token as a subprotocol and opens on the server's welcome", async () => {
    const room = uniqueRoom("open");
    const token = await mintToken("alice", { name: "Alice" });
    const { client, lab, log } = makeClient({ room, token });
    expect(client.state).toBe("connecting");

    const welcome = await log.wait("welcome", () => true, "the welcome");
    expect(welcome).toMatchObject({ type: "welcome", room, user: { id: "alice", name: "Alice" }, seq: 0 });
    expect(client.state).toBe("open");
    expect(log.states).toEqual(["open"]);
    expect(lab.sockets).toHaveLength(1);
    expect(lab.last.offered).toEqual(["rooms.v1", `bearer.${token}`]);
    expect(lab.last.protocol).toBe("rooms.v1");
    // The token never rides in the URL, and a first connect asks for no history.
    expect(lab.last.requestedUrl).toBe(`${WS_BASE}/ws/chat/${room}?batch=1`);
    expect(client.user).toEqual({ id: "alice", name: "Alice" });
    expect(client.users).toEqual([{ id: "alice", name: "Alice" }]);
  });

  it("resolves a send with its ack and delivers every message once, in seq order", async () => {
    const { alice, bob } = await twoClients("send");
    await alice.log.wait("presence", (p) => p.event === "join" && p.user.id === "bob", "alice: bob joins");
    expect(alice.client.users.map((u) => u.id).sort()).toEqual(["alice", "bob"]);

    const first = await alice.client.send("hello");
    expect(first).toEqual({ id: expect.any(String), seq: 1 });
    const second = await bob.client.send({ kind: "wave", emoji: "👋" }, { id: "bob-1" });
    expect(second).toEqual({ id: "bob-1", seq: 2 });
    await alice.log.wait("message", (m) => m.seq === 2, "alice: seq 2");
    await bob.log.wait("message", (m) => m.seq === 2, "bob: seq 2");
    for (const { log } of [alice, bob]) {
      const messages = log.all("message");
      expect(seqsOf(messages)).toEqual([1, 2]);
      expect(messages[0]).toMatchObject({ id: first.id, from: { id: "alice" }, text: "hello" });
      expect(messages[1]).toMatchObject({ id: "bob-1", from: { id: "bob" }, data: { kind: "wave", emoji: "👋" } });
    }

    // A direct message: acknowledged without a seq, seen by its recipient only.
    const direct = await alice.client.send("psst", { to: "bob" });
    expect(direct).toEqual({ id: expect.any(String) });
    const got = await bob.log.wait("message", (m) => m.text === "psst", "bob: the direct message");
    expect(got).toMatchObject({ to: "bob", from: { id: "alice" } });
    expect(got.seq).toBeUndefined();
    expect(alice.client.lastSeq).toBe(2);

    bob.client.close();
    const left = await alice.log.wait("presence", (p) => p.event === "leave", "alice: bob leaves");
    expect(left.user.id).toBe("bob");
    expect(alice.client.users.map((u) => u.id)).toEqual(["alice"]);
  });

  it("rejects a send with the error frame that carries its id", async () => {
    const { client, log } = makeClient({ room: uniqueRoom("reject"), token: await mintToken("alice") });
    await log.wait("welcome", () => true, "the welcome");
    // Over the server's MAX_TEXT_LENGTH (4000): refused with invalid_message and our id.
    const error = await client.send("x".repeat(4001), { id: "too-long" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RoomClientError);
    expect(error).toMatchObject({ code: "invalid_message", frame: { type: "error", id: "too-long" } });
    // Answered through the promise, not as an unclaimed error event.
    expect(log.all("error")).toEqual([]);
    // Content that can never be sent is refused before it is queued.
    await expect(client.send(undefined)).rejects.toMatchObject({ code: "invalid_message" });
    await expect(client.send("x", { id: "y".repeat(65) })).rejects.toMatchObject({ code: "invalid_message" });
  });

  it("reconnects when a send gets no ack in time, and writes it again: acknowledged, stored once", async () => {
    const { client, lab, log } = makeClient({
      room: uniqueRoom("timeout"),
      token: await mintToken("alice"),
      ackTimeoutMs: 300,
    });
    await log.wait("welcome", () => true, "the welcome");
    lab.last.dropMessageFrames();
    const result = await client.send("into the void", { id: "void-1" });
    expect(result).toEqual({ id: "void-1", seq: 1 });
    expect(log.all("retry")).toEqual([expect.objectContaining({ reason: "ack_timeout", attempt: 1 })]);
    expect(lab.sockets).toHaveLength(2);
    await log.wait("message", (m) => m.id === "void-1", "the message, back from the room");
    expect(log.all("message").map((m) => [m.seq, m.id])).toEqual([[1, "void-1"]]);
    expect(client.state).toBe("open");
  });

  it("resumes with ?since after a drop: nothing lost, nothing twice", async () => {
    const { room, alice, bob } = await twoClients("resume", {
      reconnect: { initialDelayMs: 600, jitter: 0 },
    });
    for (const text of ["one", "two", "three"]) await bob.client.send(text);
    await alice.log.wait("message", (m) => m.seq === 3, "alice: seq 3");

    alice.lab.last.terminate();
    await alice.log.wait("retry", () => true, "alice: a retry");
    for (const text of ["four", "five", "six"]) await bob.client.send(text);
    // Sent while alice was away: she can only get them from the resume replay.
    expect(alice.client.state).toBe("reconnecting");

    await alice.log.wait("message", (m) => m.seq === 6, "alice: seq 6 after the resume");
    const messages = alice.log.all("message");
    expect(seqsOf(messages)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(messages.map((m) => m.text)).toEqual(["one", "two", "three", "four", "five", "six"]);
    expect(alice.lab.sockets).toHaveLength(2);
    expect(alice.lab.sockets[1]?.requestedUrl).toBe(`${WS_BASE}/ws/chat/${room}?batch=1&since=3`);
    expect(alice.log.all("retry")[0]).toMatchObject({ attempt: 1, reason: "dropped", closeCode: 1006 });
    expect(alice.log.all("welcome").at(-1)).toMatchObject({ seq: 6, recovered: true });
    expect(alice.log.states).toEqual(["open", "reconnecting", "open"]);
    expect(alice.log.all("gap")).toEqual([]);
  });

  it("drops messages it has already seen when a replay repeats them", async () => {
    const { alice, bob } = await twoClients("dedupe", { reconnect: { initialDelayMs: 100 } });
    for (const text of ["a", "b", "c"]) await bob.client.send(text);
    await alice.log.wait("message", (m) => m.seq === 3, "alice: seq 3");
    // The next connection asks the server for everything again: seqs 1-3 come a second time.
    alice.lab.rewriteUrl = (url) => url.replace(/since=\d+/, "since=0");
    alice.lab.last.terminate();
    await alice.log.wait("welcome", (w) => w.recovered === true, "alice: the second welcome");
    await bob.client.send("d");
    await alice.log.wait("message", (m) => m.seq === 4, "alice: seq 4");
    expect(seqsOf(alice.log.all("message"))).toEqual([1, 2, 3, 4]);
  });

  it("queues sends while disconnected, bounded, and flushes them in order once back", async () => {
    const { alice, bob } = await twoClients("queue", {
      reconnect: { initialDelayMs: 500, jitter: 0 },
      maxQueue: 3,
    });
    alice.lab.last.terminate();
    await alice.log.wait("retry", () => true, "alice: a retry");
    const sends = ["q1", "q2", "q3"].map((text) => alice.client.send(text));
    expect(alice.client.queued).toBe(3);
    await expect(alice.client.send("q4")).rejects.toMatchObject({ code: "queue_full" });

    const results = await Promise.all(sends);
    expect(results.map((r) => r.seq)).toEqual([1, 2, 3]);
    await bob.log.wait("message", (m) => m.seq === 3, "bob: seq 3");
    expect(bob.log.all("message").map((m) => m.text)).toEqual(["q1", "q2", "q3"]);
    expect(alice.client.queued).toBe(0);
  });

  it("flushes a full queue of 100 at the server's pace: none refused, all in order", async () => {
    const { alice, bob } = await twoClients("flood", { reconnect: { initialDelayMs: 300, jitter: 0 } });
    alice.lab.last.terminate();
    await alice.log.wait("retry", () => true, "alice: a retry");
    const texts = Array.from({ length: 100 }, (_, i) => `f${i}`);
    const sends = texts.map((text) => alice.client.send(text));
    const results = await Promise.all(sends);
    expect(results.map((r) => r.seq)).toEqual(texts.map((_, i) => i + 1));
    await bob.log.wait("message", (m) => m.seq === 100, "bob: seq 100");
    expect(bob.log.all("message").map((m) => m.text)).toEqual(texts);
    expect(alice.log.all("error")).toEqual([]);
  });

  it("sends a message again after a drop without the room storing it twice", async () => {
    const { alice, bob } = await twoClients("resend", { reconnect: { initialDelayMs: 200 } });
    // m1 never reaches the server; m2 is stored, but its ack never reaches alice.
    alice.lab.last.dropMessageFrames(1);
    const lost = alice.client.send("m1");
    await sleep(100);
    alice.lab.last.mute();
    const unacked = alice.client.send("m2");
    await bob.log.wait("message", (m) => m.text === "m2", "bob: m2");
    alice.lab.last.terminate();

    const [r1, r2] = await Promise.all([lost, unacked]);
    expect(r2.seq).toBe(1);
    expect(r1.seq).toBe(2);
    await bob.log.wait("message", (m) => m.text === "m1", "bob: m1");
    await alice.log.wait("message", (m) => m.seq === 2, "alice: seq 2");
    await sleep(300);
    expect(bob.log.all("message").map((m) => [m.seq, m.text])).toEqual([
      [1, "m2"],
      [2, "m1"],
    ]);
    expect(seqsOf(alice.log.all("message"))).toEqual([1, 2]);
  });

  it("backs off with growing, jittered delays and gives up after maxAttempts", async () => {
    // Nothing listens on this port: every attempt fails, and the probe finds no server either.
    const url = `http://${HOST}:${await freePort()}`;
    const { log } = makeClient({
      url,
      room: "nowhere",
      token: "unused",
      reconnect: { initialDelayMs: 100, factor: 2, maxDelayMs: 400, jitter: 0.5, maxAttempts: 5 },
    });
    await log.state("closed", "the client to give up", 15_000);
    const retries = log.timed("retry");
    expect(retries.map((r) => r.payload.attempt)).toEqual([1, 2, 3, 4, 5]);
    const ceilings = [100, 200, 400, 400, 400];
    retries.forEach(({ payload }, i) => {
      const ceiling = ceilings[i] ?? 0;
      expect(payload.reason).toBe("unreachable");
      expect(payload.delayMs).toBeGreaterThanOrEqual(ceiling / 2);
      expect(payload.delayMs).toBeLessThanOrEqual(ceiling);
    });
    for (let i = 1; i < retries.length; i++) {
      const previous = retries[i - 1];
      const current = retries[i];
      if (!previous || !current) continue;
      // The next failure comes no sooner than the delay before its attempt.
      expect(current.at - previous.at).toBeGreaterThanOrEqual(previous.payload.delayMs - 5);
    }
    // Jitter: the delays are not all at their ceilings.
    expect(retries.some((r, i) => r.payload.delayMs < (ceilings[i] ?? 0))).toBe(true);
    expect(log.all("state").at(-1)).toMatchObject({ state: "closed", stop: { code: "retries_exhausted" } });
    expect(log.states).toEqual(["reconnecting", "closed"]);
  });

  it("gets a fresh token and reconnects at once when the server closes with 4401", async () => {
    const room = uniqueRoom("expiry");
    const issued: number[] = [];
    const { client, lab, log } = makeClient({
      room,
      // The first token expires within two seconds; the next ones last an hour.
      token: () => {
        issued.push(Date.now());
        return mintToken("alice", { expiresAt: issued.length === 1 ? inSeconds(2) : inSeconds(3600) });
      },
    });
    await log.wait("welcome", () => true, "the first welcome");
    const retry = await log.wait("retry", () => true, "the 4401 retry", { timeoutMs: 8_000 });
    expect(retry).toMatchObject({ reason: "token_expired", closeCode: 4401, delayMs: 0, attempt: 1 });
    await until(() => log.all("welcome").length === 2, "a second welcome");
    expect(issued).toHaveLength(2);
    expect(lab.sockets).toHaveLength(2);
    expect(client.state).toBe("open");
    // Well past the first token's expiry, the second connection stays up.
    await sleep(2 * TEST_HEARTBEAT_INTERVAL_MS);
    expect(client.state).toBe("open");
  });

  it("stops with token_expired when a fixed token string expires (4401)", async () => {
    const { lab, log } = makeClient({
      room: uniqueRoom("fixed"),
      token: await mintToken("alice", { expiresAt: inSeconds(2) }),
    });
    await log.wait("welcome", () => true, "the welcome");
    const closed = await log.wait("state", (s) => s.state === "closed", "the stop", { timeoutMs: 8_000 });
    expect(closed.stop).toMatchObject({ code: "token_expired", closeCode: 4401 });
    await sleep(300);
    expect(lab.sockets).toHaveLength(1);
  });

  it("stops when the server refuses the upgrade right after a fresh token (HTTP 401)", async () => {
    const room = uniqueRoom("refused");
    let calls = 0;
    const { lab, log } = makeClient({
      room,
      // A good token first, expiring within two seconds; after the 4401 a token the server refuses.
      token: () => {
        calls += 1;
        return calls === 1
          ? mintToken("alice", { expiresAt: inSeconds(2) })
          : mintToken("alice", { secret: "not-the-server-secret-0123456789abcdef" });
      },
    });
    await log.wait("welcome", () => true, "the welcome");
    const closed = await log.wait("state", (s) => s.state === "closed", "the stop", { timeoutMs: 8_000 });
    expect(log.all("retry")).toEqual([expect.objectContaining({ reason: "token_expired", closeCode: 4401 })]);
    // `ws` lets the client read the refusal: the server's JSON error comes with the stop.
    expect(closed.stop).toMatchObject({ code: "handshake_refused", status: 401, error: { code: "invalid_token" } });
    expect(closed.stop?.message).toContain("invalid_token");
    expect(calls).toBe(2);
    await sleep(300);
    expect(lab.sockets).toHaveLength(2);
  });

  it("treats a refusal as final when the status is hidden (as in browsers) and the server answers HTTP", async () => {
    const lab = new SocketLab();
    lab.hidesStatus = true;
    const { log } = makeClient(
      { room: uniqueRoom("hidden"), token: () => mintToken("alice", { secret: "wrong-secret-0123456789abcdef0123" }) },
      lab,
    );
    const closed = await log.wait("state", (s) => s.state === "closed", "the stop");
    expect(closed.stop).toMatchObject({ code: "handshake_refused" });
    expect(closed.stop?.status).toBeUndefined();
    expect(lab.sockets).toHaveLength(1);
  });

  it("stops when an admin kicks the user (4403)", async () => {
    const { room, alice, bob } = await twoClients("kick");
    const admin = await mintToken("ops", { role: "admin" });
    const response = await fetch(`${BASE_URL}/api/rooms/${room}/users/alice`, {
      method: "DELETE",
      headers: { Authorization: `Bearer ${admin}` },
    });
    expect(response.status).toBe(204);
    const closed = await alice.log.wait("state", (s) => s.state === "closed", "alice: the stop");
    expect(closed.stop).toMatchObject({ code: "forbidden", closeCode: 4403 });
    await bob.log.wait("presence", (p) => p.event === "leave" && p.user.id === "alice", "bob: alice leaves");
    await sleep(300);
    expect(alice.lab.sockets).toHaveLength(1);
    await expect(alice.client.send("still there?")).rejects.toMatchObject({ code: "closed" });
  });

  it("stops when the connection is closed with 1008 (policy violation)", async () => {
    // The server never sends 1008, but a proxy in front of it may: a stand-in server does here.
    const fake = new WebSocketServer({ host: HOST, port: 0, handleProtocols: () => "rooms.v1" });
    try {
      await new Promise<void>((resolve) => fake.once("listening", () => resolve()));
      fake.on("connection", (socket) => {
        socket.send(
          JSON.stringify({
            type: "welcome",
            room: "policy",
            connectionId: "c1",
            user: { id: "alice", name: "Alice" },
            seq: 0,
            presence: [{ id: "alice", name: "Alice", connections: 1 }],
            heartbeatInterval: 30_000,
          }),
        );
        setTimeout(() => socket.close(1008, "policy violation"), 50);
      });
      const port = (fake.address() as AddressInfo).port;
      const { lab, log } = makeClient({ url: `ws://${HOST}:${port}`, room: "policy", token: "t" });
      const closed = await log.wait("state", (s) => s.state === "closed", "the stop");
      expect(closed.stop).toMatchObject({ code: "policy_violation", closeCode: 1008 });
      await sleep(300);
      expect(lab.sockets).toHaveLength(1);
    } finally {
      for (const client of fake.clients) client.terminate();
      await new Promise((resolve) => fake.close(resolve));
    }
  });

  it("pings at half the heartbeat interval, echoes heartbeats, and reconnects when the server goes silent", async () => {
    const { lab, log } = makeClient({ room: uniqueRoom("silent"), token: await mintToken("alice") });
    const welcome = await log.wait("welcome", () => true, "the welcome");
    expect(welcome.heartbeatInterval).toBe(TEST_HEARTBEAT_INTERVAL_MS);
    const sent: string[] = [];
    const socket = lab.last;
    const send = socket.send.bind(socket);
    (socket as { send: (data: string) => void }).send = (data: string) => {
      sent.push(data);
      send(data);
    };
    await sleep(1.6 * TEST_HEARTBEAT_INTERVAL_MS);
    expect(sent.filter((f) => f === '{"type":"ping"}').length).toBeGreaterThanOrEqual(2);
    // Everything else it sent unasked is the server's heartbeats, echoed back (proof that it reads).
    // The server's first heartbeat is its alarm, one interval after the connect: on a loaded
    // machine that alarm can run well after 1.6 intervals, so wait for it rather than assume it came.
    const others = () => sent.filter((f) => f !== '{"type":"ping"}');
    await until(() => others().length >= 1, "a server heartbeat echoed", 6 * TEST_HEARTBEAT_INTERVAL_MS);
    for (const frame of others())
      expect(JSON.parse(frame)).toMatchObject({ type: "heartbeat", timestamp: expect.any(Number) });

    const mutedAt = Date.now();
    socket.mute();
    const retry = await log.wait("retry", (r) => r.reason === "heartbeat", "the heartbeat retry");
    const after = Date.now() - mutedAt;
    expect(after).toBeGreaterThanOrEqual(2 * TEST_HEARTBEAT_INTERVAL_MS - 600);
    expect(after).toBeLessThan(4 * TEST_HEARTBEAT_INTERVAL_MS);
    expect(retry.attempt).toBe(1);
    await until(() => log.all("welcome").length === 2, "the welcome after the reconnect");
    expect(lab.sockets).toHaveLength(2);
  });

  it("close() rejects what is pending and leaves no timer running", async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const before = timers();
    const { client, lab, log } = makeClient({ room: uniqueRoom("close"), token: await mintToken("alice") });
    await log.wait("welcome", () => true, "the welcome");
    lab.last.dropMessageFrames();
    const pending = client.send("never acknowledged");
    expect(timers()).toBeGreaterThan(before);
    client.close();
    await expect(pending).rejects.toMatchObject({ code: "closed" });
    expect(log.all("state").at(-1)).toMatchObject({ state: "closed", stop: { code: "closed_by_client" } });
    // The socket's closing handshake finishes too: then nothing of the client's is scheduled.
    await until(() => timers() <= before, "every timer to be gone", 3_000);
    await sleep(1.5 * TEST_HEARTBEAT_INTERVAL_MS);
    expect(lab.sockets).toHaveLength(1);
    expect(client.state).toBe("closed");
  });
});
