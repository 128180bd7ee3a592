/**
 * End-to-end: real `ws` clients against the real local server (started by wrangler-dev.ts), with
 * HS256 tokens minted here with the server's test secret.
 */
import type { IncomingMessage } from "node:http";
import { SignJWT } from "jose";
import * as v from "valibot";
import { afterEach, describe, expect, inject, it } from "vitest";
import WebSocket, { type RawData } from "ws";
import { type ServerFrame, ServerFrameSchema } from "../../src/protocol";

const BASE_URL = inject("e2eBaseUrl");
const SECRET = inject("e2eJwtSecret");
const WS_BASE = BASE_URL.replace(/^http/, "ws");
/** How long to wait for one expected frame; the local server answers in milliseconds. */
const FRAME_TIMEOUT_MS = 10_000;

// ---------------------------------------------------------------------------------------------
// Helpers

let roomCounter = 0;
/** A room id no other test (or earlier run against the same state) uses. */
function uniqueRoom(): string {
  roomCounter += 1;
  return `e2e-${Date.now()}-${process.pid}-${roomCounter}`;
}

async function mintToken(
  sub: string,
  name: string,
  { secret = SECRET, expiresAt = Math.floor(Date.now() / 1000) + 3600 } = {},
): Promise<string> {
  return new SignJWT({ name })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(expiresAt)
    .sign(new TextEncoder().encode(secret));
}

type FrameOf<K extends ServerFrame["type"]> = Extract<ServerFrame, { type: K }>;

/** A predicate matching frames of one `type`, optionally narrowed further. */
function ofType<K extends ServerFrame["type"]>(
  type: K,
  also: (frame: FrameOf<K>) => boolean = () => true,
): (frame: ServerFrame) => frame is FrameOf<K> {
  return (frame): frame is FrameOf<K> => frame.type === type && also(frame as FrameOf<K>);
}

interface Received {
  /** The exact text of the frame. */
  raw: string;
  frame: ServerFrame;
}

/**
 * Collects a socket's frames from the moment it is created. `next` hands out (and consumes) the first
 * not yet consumed frame that matches, waiting for one if needed; `received` keeps every frame in
 * arrival order for order assertions. Frames that break the protocol schema are recorded in
 * `violations` (checked after each test) instead of failing inside the event handler.
 */
class FrameQueue {
  readonly received: Received[] = [];
  readonly violations: string[] = [];
  readonly #unconsumed: Received[] = [];
  readonly #waiters = new Set<() => void>();
  #closed: { code: number; reason: string } | undefined;

  constructor(
    readonly name: string,
    ws: WebSocket,
  ) {
    ws.on("message", (data: RawData, isBinary: boolean) => this.#push(data, isBinary));
    ws.on("close", (code: number, reason: Buffer) => {
      this.#closed = { code, reason: reason.toString("utf8") };
      this.#wake();
    });
  }

  #push(data: RawData, isBinary: boolean): void {
    if (isBinary) {
      this.violations.push(`${this.name}: unexpected binary frame`);
      return;
    }
    const bytes = Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? Buffer.from(data) : data;
    const raw = bytes.toString("utf8");
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch {
      this.violations.push(`${this.name}: frame is not JSON: ${raw.slice(0, 200)}`);
      return;
    }
    const checked = v.safeParse(ServerFrameSchema, json);
    if (!checked.success) {
      const issue = checked.issues[0];
      this.violations.push(`${this.name}: frame breaks the protocol (${issue.message}): ${raw.slice(0, 200)}`);
    }
    // Keep the frame as sent (the schema's output would drop unknown keys).
    const received = { raw, frame: json as ServerFrame };
    this.received.push(received);
    this.#unconsumed.push(received);
    this.#wake();
  }

  #wake(): void {
    for (const waiter of [...this.#waiters]) waiter();
  }

  #take(predicate: (frame: ServerFrame) => boolean): Received | undefined {
    const index = this.#unconsumed.findIndex((r) => predicate(r.frame));
    if (index === -1) return undefined;
    return this.#unconsumed.splice(index, 1)[0];
  }

  /** The next matching frame with its exact text; rejects naming `what` if none comes in time. */
  nextRaw(predicate: (frame: ServerFrame) => boolean, timeoutMs: number, what: string): Promise<Received> {
    return new Promise((resolve, reject) => {
      const fail = (why: string) => {
        done();
        const seen = this.received.map((r) => r.raw.slice(0, 160)).join("\n  ") || "(none)";
        reject(new Error(`${this.name}: ${why} while waiting for ${what}; frames received:\n  ${seen}`));
      };
      const check = () => {
        const found = this.#take(predicate);
        if (found) {
          done();
          resolve(found);
        } else if (this.#closed) {
          fail(`the socket closed (${this.#closed.code} ${this.#closed.reason})`);
        }
      };
      const timer = setTimeout(() => fail(`timed out after ${timeoutMs} ms`), timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** The next matching frame; rejects naming `what` if none comes within `timeoutMs`. */
  next<F extends ServerFrame>(
    predicate: (frame: ServerFrame) => frame is F,
    timeoutMs: number,
    what: string,
  ): Promise<F>;
  next(predicate: (frame: ServerFrame) => boolean, timeoutMs: number, what: string): Promise<ServerFrame>;
  async next(predicate: (frame: ServerFrame) => boolean, timeoutMs: number, what: string): Promise<ServerFrame> {
    return (await this.nextRaw(predicate, timeoutMs, what)).frame;
  }

  /** Position of a frame in arrival order (by identity), -1 if never received. */
  indexOf(frame: ServerFrame): number {
    return this.received.findIndex((r) => r.frame === frame);
  }

  /** Unconsumed frames, for asserting that nothing unexpected arrived. */
  get pending(): readonly ServerFrame[] {
    return this.#unconsumed.map((r) => r.frame);
  }
}

interface Client {
  ws: WebSocket;
  q: FrameQueue;
}

const openClients = new Set<Client>();

/** Connects and resolves once the upgrade succeeded; rejects with the HTTP answer if refused. */
function connect(
  name: string,
  room: string,
  { protocols, headers, query = "" }: { protocols?: string[]; headers?: Record<string, string>; query?: string },
): Promise<Client> {
  const ws = new WebSocket(`${WS_BASE}/ws/chat/${room}${query}`, protocols, { headers });
  const client: Client = { ws, q: new FrameQueue(name, ws) };
  openClients.add(client);
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve(client));
    ws.once("unexpected-response", (_req, res: IncomingMessage) => {
      void readBody(res).then((body) => reject(new Error(`${name}: upgrade refused: HTTP ${res.statusCode} ${body}`)));
    });
    ws.once("error", (error) => reject(new Error(`${name}: ${error.message}`)));
  });
}

function readBody(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on("data", (chunk: Buffer) => chunks.push(chunk));
    res.once("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    res.once("error", reject);
  });
}

/**
 * Closes with 1000 and waits briefly for the closing handshake. Local workerd can lag seconds before
 * the TCP close, so after a short wait the socket is simply destroyed: tests never depend on it.
 */
async function closeClient(client: Client, waitMs = 1_500): Promise<void> {
  openClients.delete(client);
  const { ws } = client;
  const isClosed = () => ws.readyState === WebSocket.CLOSED;
  if (isClosed()) return;
  const closed = new Promise<void>((resolve) => ws.once("close", () => resolve()));
  // Refused or half-open upgrades emit a late "error"; nobody is listening for it any more.
  ws.on("error", () => {});
  if (ws.readyState === WebSocket.OPEN) ws.close(1000, "test done");
  else ws.terminate();
  await Promise.race([closed, new Promise((resolve) => setTimeout(resolve, waitMs))]);
  if (!isClosed()) ws.terminate();
}

afterEach(async () => {
  const clients = [...openClients];
  await Promise.all(clients.map((c) => closeClient(c)));
  const violations = clients.flatMap((c) => c.q.violations);
  expect(violations, "frames that break the wire protocol").toEqual([]);
});

const byId = <T extends { id: string }>(list: readonly T[]) => [...list].sort((a, b) => a.id.localeCompare(b.id));

// ---------------------------------------------------------------------------------------------
// Tests

describe("edge-rooms over a real wrangler dev server", () => {
  it("two ws clients chat in a room", async () => {
    const room = uniqueRoom();
    const [aliceToken, bobToken, carolToken] = await Promise.all([
      mintToken("alice", "Alice"),
      mintToken("bob", "Bob"),
      mintToken("carol", "Carol"),
    ]);

    // Alice: the browser way, the token in a subprotocol offer next to rooms.v1.
    const alice = await connect("alice", room, { protocols: ["rooms.v1", `bearer.${aliceToken}`] });
    expect(alice.ws.protocol).toBe("rooms.v1");
    const aliceWelcome = await alice.q.next(ofType("welcome"), FRAME_TIMEOUT_MS, "alice's welcome");
    expect(alice.q.indexOf(aliceWelcome)).toBe(0);
    expect(aliceWelcome).toMatchObject({
      type: "welcome",
      room,
      user: { id: "alice", name: "Alice" },
      seq: 0,
      presence: [{ id: "alice", name: "Alice", connections: 1 }],
    });
    expect(aliceWelcome.connectionId).toEqual(expect.any(String));
    expect(aliceWelcome.heartbeatInterval).toBeGreaterThan(0);
    expect(aliceWelcome).not.toHaveProperty("recovered");

    // Bob: a server-side client, the token in an Authorization header and no subprotocol.
    const bob = await connect("bob", room, { headers: { Authorization: `Bearer ${bobToken}` } });
    expect(bob.ws.protocol).toBe("");
    const bobWelcome = await bob.q.next(ofType("welcome"), FRAME_TIMEOUT_MS, "bob's welcome");
    expect(bob.q.indexOf(bobWelcome)).toBe(0);
    expect(bobWelcome).toMatchObject({ type: "welcome", room, user: { id: "bob", name: "Bob" }, seq: 0 });
    expect(byId(bobWelcome.presence)).toEqual([
      { id: "alice", name: "Alice", connections: 1 },
      { id: "bob", name: "Bob", connections: 1 },
    ]);
    expect(bobWelcome.connectionId).not.toBe(aliceWelcome.connectionId);

    const bobJoined = await alice.q.next(
      ofType("presence", (p) => p.event === "join" && p.user.id === "bob"),
      FRAME_TIMEOUT_MS,
      "alice: presence join of bob",
    );
    expect(bobJoined).toEqual({ type: "presence", event: "join", user: { id: "bob", name: "Bob" }, online: 2 });

    /** `sender` sends `text` with `id`: both get it as `seq`, byte for byte the same, and `sender` its ack. */
    async function sayAndSee(
      sender: typeof alice,
      who: { id: string; name: string },
      id: string,
      text: string,
      seq: number,
    ) {
      sender.ws.send(JSON.stringify({ type: "message", text, id }));
      const atSeq = ofType("message", (m) => m.seq === seq);
      const [atAlice, atBob] = await Promise.all([
        alice.q.nextRaw(atSeq, FRAME_TIMEOUT_MS, `alice: message seq ${seq}`),
        bob.q.nextRaw(atSeq, FRAME_TIMEOUT_MS, `bob: message seq ${seq}`),
      ]);
      for (const received of [atAlice, atBob]) {
        expect(received.frame).toMatchObject({ type: "message", seq, id, room, from: who, text });
        expect(received.frame).not.toHaveProperty("to");
      }
      expect(atAlice.raw).toBe(atBob.raw);
      const ack = await sender.q.next(ofType("ack"), FRAME_TIMEOUT_MS, `${who.id}: ack of ${id}`);
      expect(ack).toEqual({ type: "ack", id, seq });
      return atAlice;
    }

    // Bob says hello: both get seq 1, and bob gets the ack of his id; alice replies: seq 2.
    const atAlice1 = await sayAndSee(bob, { id: "bob", name: "Bob" }, "m1", "hello", 1);
    const atAlice2 = await sayAndSee(alice, { id: "alice", name: "Alice" }, "a1", "hi bob", 2);
    // Nobody else got an ack, and bob never saw a presence frame about himself.
    expect(bob.q.pending.filter((f) => f.type === "ack" || f.type === "error")).toEqual([]);
    expect(bob.q.received.filter((r) => r.frame.type === "presence")).toEqual([]);

    // Bob leaves cleanly; alice is told. (Assert on frames, not on TCP timing.)
    bob.ws.close(1000, "bye");
    const bobLeft = await alice.q.next(
      ofType("presence", (p) => p.event === "leave" && p.user.id === "bob"),
      FRAME_TIMEOUT_MS,
      "alice: presence leave of bob",
    );
    expect(bobLeft).toEqual({ type: "presence", event: "leave", user: { id: "bob", name: "Bob" }, online: 1 });

    // Carol catches up from seq 0: welcome with recovered:true, then the two stored frames in order,
    // exactly as they were broadcast.
    const carol = await connect("carol", room, {
      protocols: ["rooms.v1", `bearer.${carolToken}`],
      query: "?since=0",
    });
    expect(carol.ws.protocol).toBe("rooms.v1");
    const carolWelcome = await carol.q.next(ofType("welcome"), FRAME_TIMEOUT_MS, "carol's welcome");
    expect(carolWelcome).toMatchObject({
      type: "welcome",
      room,
      user: { id: "carol", name: "Carol" },
      seq: 2,
      recovered: true,
    });
    expect(byId(carolWelcome.presence)).toEqual([
      { id: "alice", name: "Alice", connections: 1 },
      { id: "carol", name: "Carol", connections: 1 },
    ]);
    const replay1 = await carol.q.nextRaw(
      ofType("message", (m) => m.seq === 1),
      FRAME_TIMEOUT_MS,
      "carol: replay of seq 1",
    );
    const replay2 = await carol.q.nextRaw(
      ofType("message", (m) => m.seq === 2),
      FRAME_TIMEOUT_MS,
      "carol: replay of seq 2",
    );
    // Welcome first, then the replay in seq order, before anything else (a heartbeat aside).
    const carolFirst = carol.q.received.filter((r) => r.frame.type !== "heartbeat").slice(0, 3);
    expect(carolFirst.map((r) => r.frame)).toEqual([carolWelcome, replay1.frame, replay2.frame]);
    expect(replay1.raw).toBe(atAlice1.raw);
    expect(replay2.raw).toBe(atAlice2.raw);

    await alice.q.next(
      ofType("presence", (p) => p.event === "join" && p.user.id === "carol"),
      FRAME_TIMEOUT_MS,
      "alice: presence join of carol",
    );
  });

  it("refuses a bad token over HTTP before upgrading", async () => {
    const room = uniqueRoom();
    const cases = [
      {
        what: "a token signed with another secret",
        token: await mintToken("mallory", "M", { secret: "x".repeat(48) }),
      },
      { what: "a malformed token", token: "not.a.jwt" },
      {
        what: "an expired token",
        token: await mintToken("mallory", "M", { expiresAt: Math.floor(Date.now() / 1000) - 3600 }),
      },
    ];
    for (const { what, token } of cases) {
      for (const via of ["header", "subprotocol"] as const) {
        const ws =
          via === "header"
            ? new WebSocket(`${WS_BASE}/ws/chat/${room}`, { headers: { Authorization: `Bearer ${token}` } })
            : new WebSocket(`${WS_BASE}/ws/chat/${room}`, ["rooms.v1", `bearer.${token}`]);
        // Registered so that afterEach closes it even if an expectation below fails first.
        openClients.add({ ws, q: new FrameQueue(`${what} via ${via}`, ws) });
        const refused = await new Promise<{ status: number | undefined; header: unknown; body: string }>(
          (resolve, reject) => {
            ws.once("open", () => reject(new Error(`${what} via ${via}: the upgrade succeeded`)));
            ws.once("error", (error) => reject(new Error(`${what} via ${via}: ${error.message}`)));
            ws.once("unexpected-response", (_req, res: IncomingMessage) => {
              readBody(res).then(
                (body) => resolve({ status: res.statusCode, header: res.headers["www-authenticate"], body }),
                reject,
              );
            });
          },
        );
        ws.on("error", () => {});
        ws.terminate();
        expect(refused.status, `${what} via ${via}`).toBe(401);
        expect(refused.header, `${what} via ${via}`).toBe('Bearer error="invalid_token"');
        const body = JSON.parse(refused.body) as { error: { code: string; message: string } };
        expect(body.error.code, `${what} via ${via}`).toBe("invalid_token");
        expect(body.error.message).toEqual(expect.any(String));
        // The message describes the problem and never echoes the token.
        expect(refused.body).not.toContain(token);
      }
    }
  });

  it("auto-answers the exact ping text", async () => {
    const room = uniqueRoom();
    const client = await connect("pinger", room, {
      headers: { Authorization: `Bearer ${await mintToken("pinger", "Pinger")}` },
    });
    await client.q.next(ofType("welcome"), FRAME_TIMEOUT_MS, "pinger's welcome");
    client.ws.send('{"type":"ping"}');
    const pong = await client.q.nextRaw(ofType("pong"), FRAME_TIMEOUT_MS, "pong");
    expect(pong.raw).toBe('{"type":"pong"}');
    // And again: the runtime answers every time, not only the first.
    client.ws.send('{"type":"ping"}');
    expect((await client.q.nextRaw(ofType("pong"), FRAME_TIMEOUT_MS, "second pong")).raw).toBe('{"type":"pong"}');
  });
});
