/** The client's view of a `welcome` on a resume: a gap, with the seqs the server says were missed. */
import { describe, expect, it } from "vitest";
import { RoomView } from "../../src/client/room-view";
import type { WelcomeFrame } from "../../src/protocol/index";

const base: WelcomeFrame = {
  type: "welcome",
  room: "r",
  connectionId: "c",
  user: { id: "u", name: "U" },
  seq: 25,
  presence: [],
  heartbeatInterval: 30_000,
};

describe("RoomView.welcome", () => {
  it("reports a trimmed gap with welcome.missed", () => {
    const { gap } = new RoomView().welcome({ ...base, recovered: false, missed: { from: 3, to: 5 } }, 2);
    expect(gap).toEqual({ since: 2, seq: 25, reason: "trimmed", missed: { from: 3, to: 5 } });
  });

  it("reports no gap when everything was recovered", () => {
    expect(new RoomView().welcome({ ...base, recovered: true }, 2).gap).toBeUndefined();
  });
});
