/**
 * Counts only above the server's PRESENCE_ROSTER_MAX (src/room/roster-mode.ts), as the client takes it:
 * a `roster` frame replaces the users it knew, an `occupancy` frame is decoded (older clients drop both).
 */
import { describe, expect, it } from "vitest";
import { decodeFrames } from "../../src/client/frames";
import { RoomView } from "../../src/client/room-view";

const welcome = {
  type: "welcome",
  room: "r",
  connectionId: "c",
  user: { id: "a", name: "A" },
  seq: 0,
  presence: [{ id: "a", name: "A", connections: 1 }],
  heartbeatInterval: 30_000,
} as const;

describe("the client and the counts-only switch", () => {
  it("decodes roster and occupancy frames, and a welcome that says the roster is not sent", () => {
    const roster = { type: "roster", roster: true, presence: [{ id: "b", name: "B", connections: 2 }] };
    const occupancy = { type: "occupancy", online: 500, connections: 612 };
    expect(decodeFrames(JSON.stringify([roster, occupancy]))).toEqual([roster, occupancy]);
    const counts = { ...welcome, presence: [], roster: false };
    expect(decodeFrames(JSON.stringify(counts))).toEqual([counts]);
  });

  it("replaces the users it knew with a roster frame's list, and empties them when the roster stops", () => {
    const view = new RoomView();
    view.welcome({ ...welcome, presence: [...welcome.presence] }, undefined);
    view.presence({ type: "presence", event: "join", user: { id: "x", name: "X" }, online: 2 });
    view.roster([]);
    expect(view.users).toEqual([]);
    view.roster([
      { id: "a", name: "A", connections: 1 },
      { id: "b", name: "B", connections: 1, state: { mood: "ok" } },
    ]);
    expect(view.users).toEqual([
      { id: "a", name: "A" },
      { id: "b", name: "B", state: { mood: "ok" } },
    ]);
  });
});
