import { env, runInDurableObject, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../src/index";
import { connect, errorOf, join, mintToken, roomStub, uniqueRoom, upgrade } from "./helpers";

describe("the upgrade gate", () => {
  it("answers /healthz with 200 ok", async () => {
    const res = await SELF.fetch("https://rooms.test/healthz");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
  });

  it("answers an unknown route with 404 not_found", async () => {
    const res = await SELF.fetch("https://rooms.test/nope");
    expect(await errorOf(res)).toMatchObject({ status: 404, code: "not_found" });
  });

  it("answers 426 upgrade_required to a request that is not a WebSocket upgrade", async () => {
    const res = await SELF.fetch(`https://rooms.test/ws/chat/${uniqueRoom()}`);
    const error = await errorOf(res);
    expect(error).toMatchObject({ status: 426, code: "upgrade_required" });
    expect(error.headers.get("Upgrade")).toBe("websocket");
  });

  it("checks the upgrade before anything else: no upgrade beats a bad room and no token", async () => {
    const res = await SELF.fetch("https://rooms.test/ws/chat/bad.room");
    expect((await errorOf(res)).code).toBe("upgrade_required");
  });

  it.each([
    ["a room id with a dot", "bad.room", ""],
    ["a room id over 64 characters", "a".repeat(65), ""],
    ["a room id with unicode", "caf%C3%A9", ""],
    ["a non-numeric since", "ok-room", "since=abc"],
    ["a negative since", "ok-room", "since=-1"],
  ])("answers 400 invalid_request listing the issues for %s", async (_what, room, query) => {
    const token = await mintToken();
    const res = await upgrade(room, { token, query });
    const error = await errorOf(res);
    expect(error).toMatchObject({ status: 400, code: "invalid_request" });
    expect(error.issues?.length).toBeGreaterThan(0);
  });

  it("answers 400 when the client offers subprotocols but not rooms.v1", async () => {
    const res = await upgrade(uniqueRoom(), { headers: { "Sec-WebSocket-Protocol": "chat, superchat" } });
    const error = await errorOf(res);
    expect(error).toMatchObject({ status: 400, code: "invalid_request" });
    expect(error.issues?.join()).toContain("rooms.v1");
  });

  it("checks the room id before the token: a bad room with no token is 400, not 401", async () => {
    const res = await upgrade("bad.room");
    expect(res.status).toBe(400);
  });

  it("answers 403 origin_not_allowed to an Origin outside ALLOWED_ORIGINS, before the token", async () => {
    const res = await upgrade(uniqueRoom(), { headers: { Origin: "https://evil.example" } });
    expect(await errorOf(res)).toMatchObject({ status: 403, code: "origin_not_allowed" });
  });

  it("accepts an allowed Origin and a request with no Origin (non-browser clients)", async () => {
    const a = await connect(uniqueRoom(), { headers: { Origin: "https://app.example.com" } });
    const b = await connect(uniqueRoom());
    expect(a.response.status).toBe(101);
    expect(b.response.status).toBe(101);
    a.close();
    b.close();
  });

  it("answers 401 missing_token with a Bearer challenge when no token is sent", async () => {
    const error = await errorOf(await upgrade(uniqueRoom()));
    expect(error).toMatchObject({ status: 401, code: "missing_token" });
    expect(error.headers.get("WWW-Authenticate")).toBe("Bearer");
  });

  it("answers 401 invalid_token with WWW-Authenticate and no key material for a bad token", async () => {
    const res = await upgrade(uniqueRoom(), { token: "not.a.jwt" });
    expect(res.headers.get("WWW-Authenticate")).toBe('Bearer error="invalid_token"');
    const text = await res.text();
    expect(JSON.parse(text).error.code).toBe("invalid_token");
    expect(text).not.toContain("edge-rooms-test-secret");
    expect(text).not.toMatch(/at .*\.ts|stack/i);
  });

  it("answers 403 forbidden when the rooms claim does not cover the room", async () => {
    const token = await mintToken({ rooms: ["lobby", "team-*"] });
    expect(await errorOf(await upgrade("other", { token }))).toMatchObject({ status: 403, code: "forbidden" });
  });

  it("lets a rooms claim grant a room exactly or by prefix", async () => {
    const token = await mintToken({ rooms: ["lobby", "team-*"] });
    for (const room of ["lobby", `team-${uniqueRoom()}`]) {
      const client = await connect(room, { token });
      await client.next("welcome");
      client.close();
    }
  });

  it("takes the token from the Authorization header first", async () => {
    const good = await mintToken({ sub: "from-header" });
    const other = await mintToken({ sub: "from-query" });
    const res = await upgrade(uniqueRoom(), { token: good, query: `token=${other}` });
    expect(res.status).toBe(101);
    const ws = res.webSocket as WebSocket;
    ws.accept();
    const welcome = await new Promise<{ user: { id: string } }>((resolve) =>
      ws.addEventListener("message", (e) => resolve(JSON.parse(e.data as string))),
    );
    expect(welcome.user.id).toBe("from-header");
    ws.close();
  });

  it("takes the token from the bearer subprotocol, selects rooms.v1 and never echoes the token", async () => {
    const token = await mintToken();
    const res = await upgrade(uniqueRoom(), { token, via: "protocol" });
    expect(res.status).toBe(101);
    expect(res.headers.get("Sec-WebSocket-Protocol")).toBe("rooms.v1");
    res.webSocket?.accept();
    res.webSocket?.close();
  });

  it("takes the token from the query when ALLOW_QUERY_TOKEN is on (the default)", async () => {
    const client = await connect(uniqueRoom(), { via: "query" });
    await client.next("welcome");
    client.close();
  });

  it("refuses a query token with 401 missing_token when ALLOW_QUERY_TOKEN=false", async () => {
    const token = await mintToken();
    const request = new Request(`https://rooms.test/ws/chat/${uniqueRoom()}?token=${token}`, {
      headers: { Upgrade: "websocket" },
    });
    const res = await worker.fetch(request, { ...env, ALLOW_QUERY_TOKEN: "false" } as Env, {} as ExecutionContext);
    expect(await errorOf(res)).toMatchObject({ status: 401, code: "missing_token" });
  });

  it("ignores a client-sent copy of the internal identity header", async () => {
    const token = await mintToken({ sub: "mallory", role: "readonly" });
    const forged = JSON.stringify({
      room: "x",
      user: { id: "admin", name: "Admin" },
      role: "admin",
      exp: 9e15,
      ip: "1.2.3.4",
      selectProtocol: false,
    });
    const { client, welcome } = await join(uniqueRoom(), { token, headers: { "X-Edge-Rooms-Handoff": forged } });
    expect(welcome.user).toEqual({ id: "mallory", name: "mallory" });
    client.send({ type: "message", text: "hi" });
    expect((await client.next("error")).code).toBe("forbidden");
    client.close();
  });

  it("takes the client IP from CF-Connecting-IP only, never X-Forwarded-For", async () => {
    const room = uniqueRoom();
    const a = await connect(room, { headers: { "CF-Connecting-IP": "203.0.113.7", "X-Forwarded-For": "6.6.6.6" } });
    const b = await connect(room, { sub: "bob", headers: { "X-Forwarded-For": "6.6.6.6" } });
    const ips = await runInDurableObject(roomStub(room), (_instance, state) =>
      state.getWebSockets().map((ws) => (ws.deserializeAttachment() as { ip: string | null }).ip),
    );
    expect(ips.sort()).toEqual(["203.0.113.7", null].sort());
    a.close();
    b.close();
  });

  it("answers 503 room_full with Retry-After at MAX_CONNECTIONS_PER_ROOM, and admits again after a leave", async () => {
    const room = uniqueRoom();
    const clients = [];
    for (let i = 0; i < 5; i++) clients.push(await connect(room, { sub: `u${i}` }));
    const error = await errorOf(await upgrade(room, { token: await mintToken({ sub: "late" }) }));
    expect(error).toMatchObject({ status: 503, code: "room_full" });
    expect(Number(error.headers.get("Retry-After"))).toBeGreaterThan(0);
    clients[0]?.close();
    await clients[0]?.nextClose();
    const late = await connect(room, { sub: "late" });
    expect((await late.next("welcome")).user.id).toBe("late");
    for (const c of [...clients, late]) c.close();
  });

  it("answers 500 server_misconfigured naming the setting, on every route, for a bad setting", async () => {
    const bad = { ...env, HISTORY_LIMIT: "lots" } as Env;
    for (const path of ["/healthz", `/ws/chat/${uniqueRoom()}`]) {
      const res = await worker.fetch(
        new Request(`https://rooms.test${path}`, { headers: { Upgrade: "websocket" } }),
        bad,
        {} as ExecutionContext,
      );
      const error = await errorOf(res);
      expect(error).toMatchObject({ status: 500, code: "server_misconfigured" });
      expect(error.message).toContain("HISTORY_LIMIT");
    }
  });

  it("answers 500 server_misconfigured naming JWT_SECRET when no key is configured, without leaking it", async () => {
    const { JWT_SECRET: _omit, ...rest } = env as Env & { JWT_SECRET?: string };
    const res = await worker.fetch(new Request("https://rooms.test/healthz"), rest as Env, {} as ExecutionContext);
    const error = await errorOf(res);
    expect(error.status).toBe(500);
    expect(error.message).toContain("JWT_SECRET");
    const short = await worker.fetch(
      new Request("https://rooms.test/healthz"),
      { ...env, JWT_SECRET: "short-secret-value" } as Env,
      {} as ExecutionContext,
    );
    const text = await short.text();
    expect(text).toContain("JWT_SECRET");
    expect(text).not.toContain("short-secret-value");
  });
});
