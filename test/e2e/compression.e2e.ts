/**
 * permessage-deflate is refused (wrangler.toml `no_web_socket_compression`): with it, ~30 KB on the
 * wire inflate to a 30 MiB frame inside the runtime before the room can close it with 1009.
 * Served by bare workerd (test/support/workerd-server.ts): wrangler dev's own proxies negotiate
 * compression with the client whatever the Worker's flags say.
 */
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { WorkerdServer } from "../support/workerd-server";

describe("WebSocket compression, as deployed", () => {
  let server: WorkerdServer;
  beforeAll(async () => {
    server = await WorkerdServer.start();
  }, 120_000);
  afterAll(async () => {
    await server?.dispose();
  });

  it("answers without permessage-deflate when the client offers it", async () => {
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("deflater")
      .setExpirationTime("1h")
      .sign(new TextEncoder().encode(server.secret));
    const ws = new WebSocket(`${server.baseUrl.replace(/^http/, "ws")}/ws/chat/compression`, {
      headers: { Authorization: `Bearer ${token}` },
      perMessageDeflate: true,
    });
    let answered: string | undefined = "(no upgrade)";
    ws.once("upgrade", (res) => {
      answered = res.headers["sec-websocket-extensions"];
    });
    await new Promise((resolve, reject) => {
      ws.once("open", resolve);
      ws.once("error", reject);
    });
    expect(answered).toBeUndefined();
    expect(ws.extensions).toBe("");
    ws.close();
  });
});
