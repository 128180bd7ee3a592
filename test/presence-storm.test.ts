/**
 * Presence announcements made close together go out together (src/room/presence-feed.ts): still
 * exact for every member, whatever the order the connects land in.
 */
import { describe, expect, it } from "vitest";
import { join, settle, uniqueRoom } from "./helpers";

describe("presence in a connect storm", () => {
  it("tells every member of each join exactly once: in its welcome or as a join frame, never both", async () => {
    for (let round = 0; round < 5; round++) {
      const room = uniqueRoom("storm");
      const watcher = await join(room, { sub: "watcher" });
      // MAX_CONNECTIONS_PER_ROOM is 5 in the test config: the watcher and four at once.
      const names = ["a", "b", "c", "d"];
      const members = await Promise.all(names.map((sub) => join(room, { sub })));
      await settle(100);
      const everyone = ["watcher", ...names].sort();
      for (const { client, welcome } of [watcher, ...members]) {
        const known = welcome.presence.map((p) => p.id);
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
      // The watcher heard of the four in the order they were let in, and the count with each.
      const counts = watcher.client.all("presence").map((f) => f.online);
      expect(counts).toEqual([2, 3, 4, 5]);
      for (const { client } of [watcher, ...members]) client.close();
    }
  });
});
