import { runInDurableObject, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { errorOf, join, mintToken, roomStub, settle, uniqueRoom } from "./helpers";

const BASE = "https://rooms.test/api/rooms";

async function adminToken(extra: Parameters<typeof mintToken>[0] = {}) {
  return mintToken({ sub: "backend", name: "Backend", role: "admin", ...extra });
}

async function post(room: string, body: unknown, token?: string, headers: Record<string, string> = {}) {
  return SELF.fetch(`${BASE}/${room}/messages`, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      ...(token === undefined ? {} : { Authorization: `Bearer ${token}` }),
      ...headers,
    },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

async function get(path: string, token?: string) {
  return SELF.fetch(`${BASE}/${path}`, {
    headers: token === undefined ? {} : { Authorization: `Bearer ${token}` },
  });
}

/** Whether the room object has any table at all. */
async function hasStorage(room: string): Promise<boolean> {
  return runInDurableObject(roomStub(room), (_i, state) => {
    const tables = state.storage.sql.exec("SELECT name FROM sqlite_master WHERE type = 'table'").toArray();
    return tables.length > 0;
  });
}

describe("POST /api/rooms/:room/messages", () => {
  it("stores and broadcasts like a socket message, from the token's user, and answers 201 {seq, ts}", async () => {
    const room = uniqueRoom();
    const { client } = await join(room);
    client.send({ type: "message", text: "first" });
    await client.next("message");
    const res = await post(room, { text: "from the backend", data: { n: 1 } }, await adminToken());
    expect(res.status).toBe(201);
    const body = (await res.json()) as { seq: number; ts: number };
    expect(body.seq).toBe(2);
    expect(typeof body.ts).toBe("number");
    expect(await client.next("message")).toMatchObject({
      seq: 2,
      room,
      from: { id: "backend", name: "Backend" },
      text: "from the backend",
      data: { n: 1 },
      ts: body.ts,
    });
    client.send({ type: "message", text: "third" });
    expect((await client.next("message")).seq).toBe(3);
    client.close();
  });

  it("is idempotent by id: the same id again answers the first seq and is not broadcast twice", async () => {
    const room = uniqueRoom();
    const { client } = await join(room);
    const token = await adminToken();
    const first = await post(room, { text: "once", id: "evt-1" }, token);
    expect(first.status).toBe(201);
    const again = await post(room, { text: "once", id: "evt-1" }, token);
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual(await first.json());
    expect(await hasStorage(room)).toBe(true);
    const other = await post(room, { text: "twice", id: "evt-2" }, token);
    expect(((await other.json()) as { seq: number }).seq).toBe(2);
    await client.next("message");
    await client.next("message");
    await settle();
    expect(client.all("message").map((m) => [m.seq, m.id])).toEqual([
      [1, "evt-1"],
      [2, "evt-2"],
    ]);
    client.close();
  });

  it("answers 401 missing_token without a bearer token and 401 invalid_token for a bad one", async () => {
    const room = uniqueRoom();
    expect(await errorOf(await post(room, { text: "x" }))).toMatchObject({ status: 401, code: "missing_token" });
    const bad = await post(room, { text: "x" }, "nope");
    expect(bad.headers.get("WWW-Authenticate")).toBe('Bearer error="invalid_token"');
    expect(await errorOf(bad)).toMatchObject({ status: 401, code: "invalid_token" });
    // The query and subprotocol sources are for browsers' sockets only.
    const viaQuery = await SELF.fetch(`${BASE}/${room}/messages?token=${await adminToken()}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: '{"text":"x"}',
    });
    expect(viaQuery.status).toBe(401);
  });

  it("answers 403 forbidden to a member and to an admin whose rooms claim does not cover the room", async () => {
    const room = uniqueRoom();
    expect((await post(room, { text: "x" }, await mintToken({ role: "member" }))).status).toBe(403);
    expect((await post(room, { text: "x" }, await mintToken({ role: "readonly" }))).status).toBe(403);
    const elsewhere = await post(room, { text: "x" }, await adminToken({ rooms: ["other"] }));
    expect(await errorOf(elsewhere)).toMatchObject({ status: 403, code: "forbidden" });
    expect(await hasStorage(room)).toBe(false);
  });

  it.each([
    ["malformed JSON", '{"text":', 400, "invalid_request"],
    ["a non-object body", "[1,2]", 400, "invalid_request"],
    ["a wrong field type", '{"text":5}', 400, "invalid_request"],
    ["neither text nor data", '{"id":"x"}', 400, "invalid_request"],
    ["text over MAX_TEXT_LENGTH", JSON.stringify({ text: "t".repeat(4001) }), 400, "invalid_request"],
    ["data nested too deep", `{"data":${"[".repeat(40)}${"]".repeat(40)}}`, 400, "invalid_request"],
    ["an id over 64 characters", JSON.stringify({ text: "x", id: "i".repeat(65) }), 400, "invalid_request"],
    ["invalid UTF-8", new Uint8Array([0x7b, 0x22, 0x74, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]), 400, "invalid_request"],
    [
      "a body over MAX_MESSAGE_BYTES",
      JSON.stringify({ text: "x", data: "d".repeat(70_000) }),
      413,
      "payload_too_large",
    ],
  ])("answers %s with %i %s and stores nothing", async (_what, body, status, code) => {
    const room = uniqueRoom();
    const res = await SELF.fetch(`${BASE}/${room}/messages`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${await adminToken()}` },
      body,
    });
    const error = await errorOf(res);
    expect(error).toMatchObject({ status, code });
    if (status === 400 && code === "invalid_request" && _what.startsWith("a wrong")) {
      expect(error.issues?.length).toBeGreaterThan(0);
    }
    expect(await hasStorage(room)).toBe(false);
  });

  it("answers 415 to a body that is not sent as JSON", async () => {
    const room = uniqueRoom();
    const res = await post(room, '{"text":"x"}', await adminToken(), { "Content-Type": "text/plain" });
    expect(await errorOf(res)).toMatchObject({ status: 415, code: "unsupported_media_type" });
  });

  it("answers 400 to a bad room id in every route", async () => {
    const token = await adminToken();
    for (const [method, path] of [
      ["POST", "bad.room/messages"],
      ["GET", "bad.room/messages"],
      ["GET", "bad.room"],
      ["DELETE", "bad.room/users/alice"],
    ] as const) {
      const res = await SELF.fetch(`${BASE}/${path}`, {
        method,
        headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
        body: method === "POST" ? '{"text":"x"}' : undefined,
      });
      expect(await errorOf(res), `${method} ${path}`).toMatchObject({ status: 400, code: "invalid_request" });
    }
  });
});

describe("GET /api/rooms/:room/messages", () => {
  async function roomWith(n: number) {
    const room = uniqueRoom();
    const token = await adminToken();
    for (let i = 1; i <= n; i++) expect((await post(room, { text: `m${i}` }, token)).status).toBe(201);
    return room;
  }

  async function page(room: string, query: string, token?: string) {
    const res = await get(`${room}/messages${query}`, token ?? (await mintToken({ role: "readonly" })));
    expect(res.status).toBe(200);
    expect(res.headers.get("Content-Type")).toContain("application/json");
    const body = (await res.json()) as { messages: Array<{ seq: number; text: string }>; hasMore: boolean };
    return { seqs: body.messages.map((m) => m.seq), hasMore: body.hasMore, messages: body.messages };
  }

  it("pages forward with since and limit, in seq order", async () => {
    const room = await roomWith(7);
    expect(await page(room, "?since=0&limit=3")).toMatchObject({ seqs: [1, 2, 3], hasMore: true });
    expect(await page(room, "?since=3&limit=3")).toMatchObject({ seqs: [4, 5, 6], hasMore: true });
    expect(await page(room, "?since=6&limit=3")).toMatchObject({ seqs: [7], hasMore: false });
    const full = await page(room, "?since=0");
    expect(full.messages[0]).toMatchObject({ type: "message", seq: 1, text: "m1", from: { id: "backend" } });
  });

  it("pages backward with before and limit, each page in seq order; no cursor gives the newest page", async () => {
    const room = await roomWith(7);
    expect(await page(room, "?limit=3")).toMatchObject({ seqs: [5, 6, 7], hasMore: true });
    expect(await page(room, "?before=5&limit=3")).toMatchObject({ seqs: [2, 3, 4], hasMore: true });
    expect(await page(room, "?before=2&limit=3")).toMatchObject({ seqs: [1], hasMore: false });
  });

  it("defaults the limit to 50 and only pages over what history still holds (HISTORY_LIMIT)", async () => {
    const room = await roomWith(23);
    const newest = await page(room, "");
    expect(newest.seqs).toEqual(Array.from({ length: 20 }, (_, i) => i + 4));
    expect(newest.hasMore).toBe(false);
  });

  it("stops a page at about 1 MiB, then says hasMore, and pages on from there", async () => {
    const room = uniqueRoom();
    const token = await adminToken();
    // 20 messages of ~60 KB (HISTORY_LIMIT is 20 here): ~1.2 MB in all, 17 of them fit 1 MiB.
    for (let i = 1; i <= 20; i++)
      expect((await post(room, { data: { pad: "y".repeat(60_000) } }, token)).status).toBe(201);
    const first = await page(room, "?since=0&limit=500");
    expect(first.seqs).toEqual(Array.from({ length: 17 }, (_, i) => i + 1));
    expect(first.hasMore).toBe(true);
    const second = await page(room, "?since=17&limit=500");
    expect(second.seqs).toEqual([18, 19, 20]);
    expect(second.hasMore).toBe(false);
  });

  it.each([["?limit=0"], ["?limit=501"], ["?limit=ten"], ["?since=-1"], ["?since=1&before=5"]])(
    "answers 400 invalid_request to %s",
    async (query) => {
      const res = await get(`${uniqueRoom()}/messages${query}`, await mintToken());
      expect(await errorOf(res)).toMatchObject({ status: 400, code: "invalid_request" });
    },
  );

  it("lets any role read, but only rooms its claim covers", async () => {
    const room = await roomWith(1);
    for (const role of ["readonly", "member", "admin"]) {
      expect((await page(room, "", await mintToken({ role }))).seqs).toEqual([1]);
    }
    const res = await get(`${room}/messages`, await mintToken({ rooms: ["elsewhere"] }));
    expect(await errorOf(res)).toMatchObject({ status: 403, code: "forbidden" });
    expect((await get(`${room}/messages`)).status).toBe(401);
  });

  it("answers an empty list for a room that never existed, and writes nothing", async () => {
    const room = uniqueRoom();
    expect(await page(room, "?since=0")).toEqual({ seqs: [], hasMore: false, messages: [] });
    expect(await page(room, "")).toMatchObject({ seqs: [], hasMore: false });
    expect(await hasStorage(room)).toBe(false);
  });
});

describe("GET /api/rooms/:room", () => {
  it("tells an admin the latest seq, the connection count and who is online", async () => {
    const room = uniqueRoom();
    const a1 = await join(room, { sub: "alice", name: "Alice" });
    const a2 = await join(room, { sub: "alice", name: "Alice" });
    const b = await join(room, { sub: "bob" });
    a1.client.send({ type: "message", text: "x" });
    await a1.client.next("message");
    const res = await get(room, await adminToken());
    expect(res.status).toBe(200);
    const info = (await res.json()) as { users: Array<{ id: string }> };
    expect({ ...info, users: [...info.users].sort((x, y) => x.id.localeCompare(y.id)) }).toEqual({
      room,
      seq: 1,
      connections: 3,
      users: [
        { id: "alice", name: "Alice", connections: 2 },
        { id: "bob", name: "bob", connections: 1 },
      ],
    });
    for (const c of [a1, a2, b]) c.client.close();
  });

  it("answers zeros for a room that never existed, writing nothing, and 403 to a non-admin", async () => {
    const room = uniqueRoom();
    const res = await get(room, await adminToken());
    expect(await res.json()).toEqual({ room, seq: 0, connections: 0, users: [] });
    expect(await hasStorage(room)).toBe(false);
    expect((await get(room, await mintToken({ role: "member" }))).status).toBe(403);
  });
});

describe("DELETE /api/rooms/:room/users/:user", () => {
  it("closes every connection of that user with 4403 kicked, answers 204, and presence leave follows", async () => {
    const room = uniqueRoom();
    const watcher = await join(room, { sub: "watcher" });
    const m1 = await join(room, { sub: "mallory" });
    const m2 = await join(room, { sub: "mallory" });
    await watcher.client.next("presence");
    const res = await SELF.fetch(`${BASE}/${room}/users/mallory`, {
      method: "DELETE",
      headers: { Authorization: `Bearer ${await adminToken()}` },
    });
    expect(res.status).toBe(204);
    expect(await m1.client.nextClose()).toEqual({ code: 4403, reason: "kicked" });
    expect(await m2.client.nextClose()).toEqual({ code: 4403, reason: "kicked" });
    expect(await watcher.client.next("presence")).toMatchObject({ event: "leave", user: { id: "mallory" }, online: 1 });
    expect(watcher.client.closed).toBeUndefined();
    const info = (await (await get(room, await adminToken())).json()) as { connections: number };
    expect(info.connections).toBe(1);
    watcher.client.close();
  });

  it("answers 204 for a user who is not connected, 403 to a non-admin and 400 to a bad user id", async () => {
    const room = uniqueRoom();
    const del = async (user: string, token: string) =>
      SELF.fetch(`${BASE}/${room}/users/${user}`, { method: "DELETE", headers: { Authorization: `Bearer ${token}` } });
    expect((await del("nobody", await adminToken())).status).toBe(204);
    expect((await del("nobody", await mintToken())).status).toBe(403);
    expect((await del("u".repeat(129), await adminToken())).status).toBe(400);
  });
});

it("answers 404 not_found to an unknown API route", async () => {
  const res = await get("a/b/c/d", await adminToken());
  expect(await errorOf(res)).toMatchObject({ status: 404, code: "not_found" });
});
