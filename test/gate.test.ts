import { env, runInDurableObject, SELF } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import worker from "../src/worker/index";
import { connect, errorOf, handshake, join, mintToken, roomStub, uniqueRoom, upgrade } from "./helpers";

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

  it("takes the token from the query when ALLOW_QUERY_TOKEN=true", async () => {
    const token = await mintToken({ sub: "from-query" });
    const request = new Request(`https://rooms.test/ws/chat/${uniqueRoom()}?token=${token}`, {
      headers: handshake(),
    });
    const res = await worker.fetch(request, { ...env, ALLOW_QUERY_TOKEN: "true" } as Env, {} as ExecutionContext);
    expect(res.status).toBe(101);
    res.webSocket?.accept();
    res.webSocket?.close();
  });

  it("refuses a query token with 401 missing_token by default (ALLOW_QUERY_TOKEN off)", async () => {
    const res = await upgrade(uniqueRoom(), { token: await mintToken(), via: "query" });
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
        new Request(`https://rooms.test${path}`, { headers: { ...handshake() } }),
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

describe("the gate decides before touching a room object", () => {
  /** An env whose room namespace fails the test if the Worker reaches for it. */
  function envWithoutRooms(extra: Record<string, string> = {}): Env {
    const untouchable = new Proxy(
      {},
      {
        get() {
          throw new Error("the room namespace was touched");
        },
      },
    );
    return { ...env, ...extra, ROOMS: untouchable } as unknown as Env;
  }

  it.each([
    ["no upgrade", {}, "", 426],
    ["a bad room id", { ...handshake() }, "bad.room", 400],
    ["a foreign origin", { ...handshake(), Origin: "https://evil.example" }, "", 403],
    ["no token", { ...handshake() }, "", 401],
    ["a bad token", { ...handshake(), Authorization: "Bearer x.y.z" }, "", 401],
  ])("refuses %s without touching the room namespace", async (_what, headers, room, status) => {
    const res = await worker.fetch(
      new Request(`https://rooms.test/ws/chat/${room || uniqueRoom()}`, { headers }),
      envWithoutRooms(),
      {} as ExecutionContext,
    );
    expect(res.status).toBe(status);
  });

  it("refuses a token whose rooms claim does not cover the room without touching the room namespace", async () => {
    const token = await mintToken({ rooms: ["elsewhere"] });
    const res = await worker.fetch(
      new Request(`https://rooms.test/ws/chat/${uniqueRoom()}`, {
        headers: { ...handshake(), Authorization: `Bearer ${token}` },
      }),
      envWithoutRooms(),
      {} as ExecutionContext,
    );
    expect(res.status).toBe(403);
  });

  it("checks the room id before the origin (400 before 403), and the token before the rooms claim", async () => {
    const badBoth = await upgrade("bad.room", { headers: { Origin: "https://evil.example" } });
    expect(badBoth.status).toBe(400);
    const noTokenForeignRoom = await upgrade(uniqueRoom());
    expect(noTokenForeignRoom.status).toBe(401);
  });

  it("accepts any Origin when ALLOWED_ORIGINS is unset", async () => {
    const { ALLOWED_ORIGINS: _unset, ...rest } = env as Env & { ALLOWED_ORIGINS?: string };
    const token = await mintToken();
    const res = await worker.fetch(
      new Request(`https://rooms.test/ws/chat/${uniqueRoom()}`, {
        headers: { ...handshake(), Origin: "https://anywhere.example", Authorization: `Bearer ${token}` },
      }),
      rest as Env,
      {} as ExecutionContext,
    );
    expect(res.status).toBe(101);
    res.webSocket?.accept();
    res.webSocket?.close();
  });

  it("prefers the subprotocol token over the query token", async () => {
    const viaProtocol = await mintToken({ sub: "from-protocol" });
    const viaQuery = await mintToken({ sub: "from-query" });
    const res = await upgrade(uniqueRoom(), { token: viaProtocol, via: "protocol", query: `token=${viaQuery}` });
    const ws = res.webSocket as WebSocket;
    ws.accept();
    const welcome = await new Promise<{ user: { id: string } }>((resolve) =>
      ws.addEventListener("message", (e) => resolve(JSON.parse(e.data as string))),
    );
    expect(welcome.user.id).toBe("from-protocol");
    ws.close();
  });

  it("answers /healthz with 500 server_misconfigured for a JWT_PUBLIC_KEY that is not a usable key", async () => {
    const { JWT_SECRET: _s, ...rest } = env as Env & { JWT_SECRET?: string };
    const pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----";
    const res = await worker.fetch(
      new Request("https://rooms.test/healthz"),
      { ...rest, JWT_PUBLIC_KEY: pem, JWT_AUDIENCE: "rooms" } as Env,
      {} as ExecutionContext,
    );
    expect(await errorOf(res)).toMatchObject({ status: 500, code: "server_misconfigured" });
  });
});

describe("logs", () => {
  function captureLogs() {
    const lines: Array<Record<string, unknown>> = [];
    const grab = (...args: unknown[]) => {
      try {
        lines.push(JSON.parse(String(args[0])));
      } catch {
        // not one of ours
      }
    };
    const spies = [
      vi.spyOn(console, "log").mockImplementation(grab),
      vi.spyOn(console, "error").mockImplementation(grab),
    ];
    const restore = () => {
      for (const spy of spies) spy.mockRestore();
    };
    return { lines, restore };
  }

  it("logs a gate refusal as one JSON line with status, code and IP, never the token", async () => {
    const logs = captureLogs();
    const token = await mintToken({ ttl: -3600 });
    await upgrade(uniqueRoom(), { token, via: "header", headers: { "CF-Connecting-IP": "198.51.100.4" } });
    await upgrade(uniqueRoom(), { token, via: "protocol" });
    logs.restore();
    const refusals = logs.lines.filter((l) => l.event === "gate_refused");
    expect(refusals).toHaveLength(2);
    expect(refusals[0]).toMatchObject({ status: 401, code: "invalid_token", ip: "198.51.100.4" });
    expect(JSON.stringify(logs.lines)).not.toContain(token.split(".")[2]);
    expect(JSON.stringify(logs.lines)).not.toContain(token.split(".")[1]);
  });

  it("logs each connection's open and close with room, connection id, user, IP, close code, reason and duration", async () => {
    const logs = captureLogs();
    const room = uniqueRoom();
    const { client, welcome } = await join(room, { sub: "logged", headers: { "CF-Connecting-IP": "192.0.2.9" } });
    client.close(1000, "done");
    await client.nextClose();
    await new Promise((r) => setTimeout(r, 50));
    logs.restore();
    const open = logs.lines.find((l) => l.event === "connection_open" && l.room === room);
    const close = logs.lines.find((l) => l.event === "connection_close" && l.room === room);
    expect(open).toMatchObject({ room, connectionId: welcome.connectionId, user: "logged", ip: "192.0.2.9" });
    expect(close).toMatchObject({
      room,
      connectionId: welcome.connectionId,
      user: "logged",
      code: 1000,
      reason: "done",
    });
    expect(typeof close?.durationMs).toBe("number");
  });
});
