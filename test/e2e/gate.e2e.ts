/**
 * End-to-end checks of the Worker gate against real `wrangler dev` servers started here: what the
 * Worker can and cannot trust about the peer (dev tokens), and the shipped per-IP connect limit.
 */
import { request } from "node:http";
import { afterAll, describe, expect, it } from "vitest";
import { WranglerServer } from "../support/wrangler-server";

interface Sent {
  method?: string;
  path: string;
  headers: Record<string, string>;
  localAddress?: string;
  body?: string;
}

/** One request with node:http (fetch refuses an Upgrade header); a 101 is answered by closing. */
function send(port: number, { method = "GET", path, headers, localAddress, body }: Sent) {
  return new Promise<{ status: number; body: string; headers: Record<string, unknown> }>((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, localAddress, method, path, headers }, (res) => {
      let text = "";
      res.on("data", (chunk: Buffer) => {
        text += chunk.toString("utf8");
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text, headers: res.headers }));
    });
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, body: "", headers: res.headers });
    });
    req.on("error", reject);
    req.end(body);
  });
}

function postDevToken(port: number, localAddress: string, headers: Record<string, string>) {
  return send(port, {
    method: "POST",
    path: "/dev/token",
    localAddress,
    headers: { "Content-Type": "application/json", ...headers },
    body: JSON.stringify({ sub: "mallory", role: "admin" }),
  });
}

describe("dev tokens, with wrangler listening beyond loopback", () => {
  let server: WranglerServer | undefined;
  afterAll(async () => {
    await server?.dispose();
  });

  it("mints nothing for DEV_TOKENS=true set outside npm run dev, even to a peer that spoofs Host and CF-Connecting-IP", async () => {
    // As with DEV_TOKENS=true in .dev.vars and `wrangler dev --ip 0.0.0.0`: any machine can reach it.
    server = await WranglerServer.start({ ip: "0.0.0.0", vars: { DEV_TOKENS: "true" } });
    const spoofed = await postDevToken(server.port, "127.0.0.5", {
      Host: "localhost",
      "CF-Connecting-IP": "127.0.0.1",
    });
    expect(spoofed.status, spoofed.body).toBe(404);
    const plain = await postDevToken(server.port, "127.0.0.1", {});
    expect(plain.status, plain.body).toBe(404);
  });
});

describe("the shipped per-IP connect limit (wrangler.toml CONNECT_LIMITER)", () => {
  let server: WranglerServer | undefined;
  afterAll(async () => {
    await server?.dispose();
  });

  it("answers 429 too_many_requests with Retry-After once one address passes it, and other addresses still get in", async () => {
    server = await WranglerServer.start({ connectLimit: "shipped" });
    const port = server.port;
    const upgrade = (ip: string) =>
      send(port, {
        path: "/ws/chat/limit-room",
        headers: {
          Upgrade: "websocket",
          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
          "Sec-WebSocket-Version": "13",
          // wrangler dev keeps a client-sent CF-Connecting-IP, as Cloudflare's edge would set it.
          "CF-Connecting-IP": ip,
        },
      });
    // Windows are aligned to the clock: within 2 × 600 + 1 attempts one window sees more than 600.
    let refused: Awaited<ReturnType<typeof upgrade>> | undefined;
    let attempts = 0;
    while (refused === undefined && attempts < 1201) {
      attempts += 1;
      const res = await upgrade("203.0.113.50");
      if (res.status === 429) refused = res;
    }
    expect(refused, `no 429 in ${attempts} attempts`).toBeDefined();
    expect(attempts).toBeGreaterThan(600 / 2);
    const body = JSON.parse(refused?.body ?? "{}") as { error: { code: string } };
    expect(body.error.code).toBe("too_many_requests");
    expect(Number(refused?.headers["retry-after"])).toBeGreaterThan(0);
    // Not a token problem or a room: the same request from another address is judged on its token.
    const other = await upgrade("203.0.113.51");
    expect(other.status).toBe(401);
  });
});
