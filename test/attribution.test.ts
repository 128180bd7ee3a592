import { describe, expect, it } from "vitest";
import { join, settle, uniqueRoom } from "./helpers";

describe("binary attribution", () => {
  it("sends each recipient a binary frame naming the sender immediately before each relayed binary frame", async () => {
    const room = uniqueRoom();
    const a = await join(room, { sub: "a", name: "Ann" });
    const b = await join(room, { sub: "b" });
    const c = await join(room, { sub: "c" });
    await a.client.waitFor((f) => f.filter((x) => x.type === "presence").length >= 2, "two joins");
    a.client.sendRaw(new Uint8Array([1, 2]));
    c.client.sendRaw(new Uint8Array([3]));
    for (const [receiver, expected] of [
      [
        b,
        [
          ["a", [1, 2]],
          ["c", [3]],
        ],
      ],
      [c, [["a", [1, 2]]]],
      [a, [["c", [3]]]],
    ] as const) {
      await receiver.client.waitFor(
        (f) => f.filter((x) => x.type === "bytes").length >= expected.length,
        "the relayed binary frames",
      );
      await settle(50);
      const frames = receiver.client.frames.filter((f) => f.type !== "heartbeat");
      const relayed = frames.flatMap((f, i) =>
        f.type === "bytes" ? [{ before: frames[i - 1], bytes: [...f.bytes] }] : [],
      );
      expect(relayed).toEqual(
        expected.map(([from, bytes]) => ({
          before: { type: "binary", from: { id: from, name: from === "a" ? "Ann" : from } },
          bytes,
        })),
      );
    }
    for (const x of [a, b, c]) x.client.close();
  });
});
