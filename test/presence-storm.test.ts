/**
 * Presence announcements made close together go out together (src/room/presence-feed.ts): still
 * exact for every member, whatever the order the connects land in.
 */
import { describe, expect, it } from "vitest";
import { join, type Received, settle, uniqueRoom } from "./helpers";

describe("presence in a connect storm", () => {
  it("tells every member of each join exactly once: in its welcome or as a join frame, never both", async () => {
    for (let round = 0; round < 5; round++) {
      const room = uniqueRoom("storm");
      const watcher = await join(room, { sub: "watcher" });
      // MAX_CONNECTIONS_PER_ROOM is 5 in the test config: the watcher and four at once.
      const names = ["a", "b", "c", "d"];
      const members = await Promise.all(names.map((sub) => join(room, { sub })));
      const everyone = ["watcher", ...names].sort();
      for (const { client, welcome } of [watcher, ...members]) {
        const known = welcome.presence.map((p) => p.id);
        const heard = (frames: Received[]) => frames.filter((f) => f.type === "presence").length;
        await client.waitFor((f) => known.length + heard(f) >= everyone.length, "a join for each one not welcomed");
        const joined = client
          .all("presence")
          .filter((f) => f.event === "join")
          .map((f) => f.user.id);
        // Nobody announced twice, nobody missing, and nobody who was already in the welcome.
        expect(joined.filter((id) => known.includes(id))).toEqual([]);
        expect(new Set(joined).size).toBe(joined.length);
        expect([...known, ...joined].sort()).toEqual(everyone);
        expect(client.all("presence").every((f) => f.event === "join")).toBe(true);
      }
      await settle(250); // past the presence interval: nothing more comes
      for (const { client, welcome } of [watcher, ...members]) {
        expect(welcome.presence.length + client.all("presence").length).toBe(everyone.length);
      }
      // The watcher heard of the four in the order they were let in, and the count with each.
      const counts = watcher.client.all("presence").map((f) => f.online);
      expect(counts).toEqual([2, 3, 4, 5]);
      for (const { client } of [watcher, ...members]) client.close();
    }
  });

  it("announces a user's join before anything it says, even while joins are being held back", async () => {
    const room = uniqueRoom("first");
    const watcher = await join(room, { sub: "watcher" });
    const carol = await join(room, { sub: "carol" });
    await watcher.client.next("presence"); // carol's join: a flush just happened
    const bob = await join(room, { sub: "bob" });
    bob.client.send({ type: "message", text: "hi" }); // within the presence interval
    bob.client.send({ type: "signal", data: { typing: true } });
    bob.client.send({ type: "message", text: "psst", to: "watcher" });
    await watcher.client.waitFor((f) => f.some((x) => x.type === "message" && x.text === "psst"), "the direct message");
    const seen = watcher.client.frames
      .filter((f) => f.type !== "heartbeat")
      .map((f) => (f.type === "presence" ? `${f.event} ${f.user.id}` : f.type === "message" ? f.text : f.type));
    expect(seen).toEqual(["welcome", "join carol", "join bob", "hi", "signal", "psst"]);
    for (const c of [watcher, carol, bob]) c.client.close();
  });
});
