/**
 * Typed payloads: `RoomClient<TData>` with a valibot `dataSchema`. The types are checked by `tsc`
 * (npm run typecheck covers this file: `expectTypeOf` and `@ts-expect-error` fail the build when the
 * types are wrong); the runtime check against `wrangler dev`.
 */
import * as v from "valibot";
import { afterEach, describe, expect, expectTypeOf, it } from "vitest";
import { RoomClient, RoomClientError, type RoomMessage } from "../../src/client/index";
import { BASE_URL, closeClients, makeClient, mintToken, SocketLab, uniqueRoom } from "./helpers";

afterEach(() => closeClients());

const MoveSchema = v.object({ kind: v.literal("move"), x: v.number(), y: v.number() });
type Move = v.InferOutput<typeof MoveSchema>;

describe("typed payloads", () => {
  it("infers the data type from dataSchema, and checks what send() takes", () => {
    const { WebSocket } = new SocketLab();
    const client = new RoomClient({
      url: BASE_URL,
      room: "typed",
      token: "t",
      dataSchema: MoveSchema,
      autoConnect: false,
      WebSocket,
    });
    expectTypeOf(client).toEqualTypeOf<RoomClient<Move>>();
    client.on("message", (m) => {
      expectTypeOf(m).toEqualTypeOf<RoomMessage<Move>>();
      expectTypeOf(m.data).toEqualTypeOf<Move | undefined>();
    });
    client.on("error", (e) => expectTypeOf(e).toEqualTypeOf<RoomClientError>());
    // Text and well-typed data are accepted; other data is not.
    void client.send("hi").catch(() => {});
    void client.send({ kind: "move", x: 1, y: 2 }).catch(() => {});
    // @ts-expect-error: not a Move
    void client.send({ kind: "jump" }).catch(() => {});

    const untyped = new RoomClient({ url: BASE_URL, room: "typed", token: "t", autoConnect: false, WebSocket });
    expectTypeOf(untyped).toEqualTypeOf<RoomClient<unknown>>();
    const declared = new RoomClient<Move>({ url: BASE_URL, room: "typed", token: "t", autoConnect: false, WebSocket });
    declared.on("message", (m) => expectTypeOf(m.data).toEqualTypeOf<Move | undefined>());
  });

  it("emits data that fails the schema as an invalid_data error, not as a message", async () => {
    const room = uniqueRoom("typed");
    const alice = makeClient({ room, token: await mintToken("alice") });
    const typed = new RoomClient({
      url: BASE_URL,
      room,
      token: await mintToken("bob"),
      dataSchema: MoveSchema,
      WebSocket: alice.lab.WebSocket,
    });
    const received: RoomMessage<Move>[] = [];
    const errors: RoomClientError[] = [];
    typed.on("message", (m) => received.push(m));
    typed.on("error", (e) => errors.push(e));
    try {
      await new Promise<void>((resolve) => typed.on("welcome", () => resolve()));
      await alice.log.wait("welcome", () => true, "alice's welcome");

      await alice.client.send({ kind: "move", x: 1, y: 2 }, { id: "good" });
      await alice.client.send({ kind: "move", x: "far" }, { id: "bad" });
      await alice.client.send("plain text", { id: "text" });
      await alice.client.send({ kind: "move", x: 3, y: 4 }, { id: "good-2" });
      const deadline = Date.now() + 10_000;
      while (received.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));

      expect(received.map((m) => m.id)).toEqual(["good", "text", "good-2"]);
      expect(received[0]?.data).toEqual({ kind: "move", x: 1, y: 2 });
      expect(errors).toHaveLength(1);
      expect(errors[0]).toBeInstanceOf(RoomClientError);
      expect(errors[0]).toMatchObject({ code: "invalid_data", id: "bad" });
      // The client carries on: its position in the room counts the bad message too.
      expect(typed.state).toBe("open");
      expect(typed.lastSeq).toBe(4);
    } finally {
      typed.close();
    }
  });
});
