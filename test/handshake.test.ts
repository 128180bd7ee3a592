import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { errorOf, handshake, join, mintToken, uniqueRoom, upgrade } from "./helpers";

// A plain HTTP request that says `Upgrade: websocket` but is no real handshake must never reach a
// room: the room would accept it and announce a join and a leave for a connection that never was.
describe("the WebSocket handshake", () => {
  const key = handshake()["Sec-WebSocket-Key"] ?? "";
  it.each([
    ["no Sec-WebSocket-Key", { "Sec-WebSocket-Key": "" }],
    ["a key that is not base64", { "Sec-WebSocket-Key": "not base64 at all!!" }],
    ["a key of 15 bytes", { "Sec-WebSocket-Key": btoa("x".repeat(15)) }],
    ["a key of 17 bytes", { "Sec-WebSocket-Key": btoa("x".repeat(17)) }],
    ["no Sec-WebSocket-Version", { "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "" }],
    ["Sec-WebSocket-Version 8", { "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "8" }],
  ])("answers 400 invalid_request to an upgrade with %s, and no room hears of it", async (_what, headers) => {
    const room = uniqueRoom();
    const { client } = await join(room, { sub: "watcher" });
    const token = await mintToken({ sub: "ghost" });
    const bad = new Headers({ ...handshake(), Authorization: `Bearer ${token}` });
    for (const [name, value] of Object.entries(headers)) {
      if (value === "") bad.delete(name);
      else bad.set(name, value);
    }
    const error = await errorOf(await SELF.fetch(`https://rooms.test/ws/chat/${room}`, { headers: bad }));
    expect(error).toMatchObject({ status: 400, code: "invalid_request" });
    expect(error.issues?.join()).toMatch(/Sec-WebSocket-(Key|Version)/);
    // A message round trip: anything the room announced about "ghost" would have arrived first.
    client.send({ type: "message", text: "after", id: "m1" });
    await client.next("ack");
    expect(client.all("presence").filter((p) => JSON.stringify(p).includes("ghost"))).toEqual([]);
    client.close();
  });

  it("accepts a real handshake (the helpers send one)", async () => {
    const res = await upgrade(uniqueRoom(), { token: await mintToken() });
    expect(res.status).toBe(101);
    res.webSocket?.accept();
    res.webSocket?.close();
  });
});
