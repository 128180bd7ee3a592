/** RoomClient against wrangler dev: message ids reused with other content, and who sent a binary frame. */
import { afterEach, describe, expect, it } from "vitest";
import { RoomClientError } from "../../src/client/index";
import { closeClients, makeClient, mintToken, uniqueRoom } from "./helpers";

afterEach(() => closeClients());

describe("RoomClient: senders and ids", () => {
  it("rejects a send whose id was already used for other content with id_conflict, and acks a true retry", async () => {
    const { client, log } = makeClient({ room: uniqueRoom("conflict"), token: await mintToken("alice") });
    await log.wait("welcome", () => true, "the welcome");
    expect(await client.send("first", { id: "m1" })).toEqual({ id: "m1", seq: 1 });
    const error = await client.send("second", { id: "m1" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RoomClientError);
    expect(error).toMatchObject({ code: "id_conflict", frame: { type: "error", code: "id_conflict", id: "m1" } });
    expect(await client.send("first", { id: "m1" })).toEqual({ id: "m1", seq: 1 });
    expect(log.all("error")).toEqual([]);
  });

  it("names the sender of each binary frame in a binaryMessage event, and still emits binary", async () => {
    const room = uniqueRoom("binary");
    const alice = makeClient({ room, token: await mintToken("alice", { name: "Alice" }) });
    await alice.log.wait("welcome", () => true, "alice's welcome");
    const bob = makeClient({ room, token: await mintToken("bob", { name: "Bob" }) });
    await bob.log.wait("welcome", () => true, "bob's welcome");
    const received: unknown[] = [];
    alice.client.on("binaryMessage", (m) => received.push({ from: m.from, bytes: [...new Uint8Array(m.data)] }));
    // The client has no binary send of its own: bob's socket sends it raw.
    bob.lab.last.send(new Uint8Array([7, 8, 9]));
    const plain = await alice.log.wait("binary", () => true, "alice: the binary frame");
    expect([...new Uint8Array(plain)]).toEqual([7, 8, 9]);
    expect(received).toEqual([{ from: { id: "bob", name: "Bob" }, bytes: [7, 8, 9] }]);
  });
});
