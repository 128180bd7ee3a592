import { describe, expect, it } from "vitest";
import { encodeHandoff } from "../src/room/handoff";
import { errorOf, join, mintToken, uniqueRoom, upgrade } from "./helpers";

// The room tags each socket `u:<sub>` and the runtime refuses a tag over 256 bytes: a sub the
// claims accept must fit, and one that does not is refused at the gate, never with a 500.
const EMOJI = "😀"; // 2 UTF-16 units, 4 UTF-8 bytes

describe("user ids and the room's socket tag", () => {
  it("connects a sub of exactly 254 UTF-8 bytes (63 emoji and two letters)", async () => {
    const sub = `${EMOJI.repeat(63)}ab`;
    const { client, welcome } = await join(uniqueRoom(), { sub });
    expect(welcome.user.id).toBe(sub);
    client.close();
  });

  it.each([
    ["64 emoji (128 characters, 256 bytes)", EMOJI.repeat(64)],
    ["63 emoji and a euro sign (127 characters, 255 bytes)", `${EMOJI.repeat(63)}€`],
  ])("refuses a sub of %s at the gate with 401 invalid_token naming sub", async (_what, sub) => {
    const error = await errorOf(await upgrade(uniqueRoom(), { token: await mintToken({ sub }) }));
    expect(error).toMatchObject({ status: 401, code: "invalid_token" });
    expect(error.message).toContain("sub");
  });

  it("hands a non-ASCII user id to the room in an ASCII-only header that parses back to the same id", () => {
    const handoff = {
      room: "r",
      user: { id: `${EMOJI}é\u2028`, name: "Zoë" },
      role: "member" as const,
      exp: 1,
      ip: null,
      selectProtocol: false,
    };
    const header = encodeHandoff(handoff);
    expect(header).toMatch(/^[\x20-\x7e]*$/);
    expect(JSON.parse(header)).toEqual(handoff);
  });
});
