/**
 * The orderer's mirror of its shards' users once the room is one object again (docs/scaling.md, "The
 * roster over the socket"): it must be empty, whatever the orderer's own count, or the users it held
 * stay in `online`, `occupancy` and `welcome.presence` of a room that is no longer sharded.
 * The orderer is driven directly, with a fake shard, so that each step happens exactly when wanted.
 */
import { describe, expect, it } from "vitest";
import type { PresenceEntry } from "../../src/protocol";
import { Orderer } from "../../src/room/orderer";
import { RETIRED_KEEP_MS } from "../../src/room/roster-sync";
import type { ShardLog } from "../../src/room/shard-log";
import type { ShardMap } from "../../src/room/shard-map";
import { settle, until } from "../helpers";

describe("orderer: the mirror when the room is one object again", () => {
  it("is emptied when the last shard leaves, even while the orderer alone is above PRESENCE_ROSTER_MAX", async () => {
    const store = {
      map: { n: 2, epoch: 1 } as ShardMap | undefined,
      setMap(map: ShardMap) {
        store.map = map;
      },
    };
    // The orderer's own users: `null` while more than the setting (2 here).
    let own: PresenceEntry[] | null = [{ id: "a", name: "a", connections: 1 }];
    const applied: PresenceEntry[][] = [];
    let deliveries = 0;
    const orderer = new Orderer(
      store as unknown as ShardLog,
      { shardMax: 4, shardGrowAt: 1000, shardShrinkAfterMs: 60_000 },
      {
        port: () => ({
          // Answers as a shard of the version before the roster did (no `rosterAt`); past 20 calls it
          // slows down, so that a loop fails the test instead of hanging it.
          deliver: async (batch) => {
            deliveries += 1;
            if (deliveries > 20) await settle(50);
            return { last: batch.from + batch.frames.length - 1, counts: { connections: 1, users: 1 } };
          },
          attach: async () => undefined,
        }),
        latest: () => 0,
        own: () => ({ connections: 1, users: 1 }),
        onMap: () => undefined,
        broadcast: () => undefined,
        roster: { own: () => own, apply: (users) => applied.push(users), max: 2 },
      },
    );
    orderer.heard(1, { connections: 1, users: 1 }, { v: 1, users: [{ id: "x", name: "x", connections: 1 }] }, 0);
    // Pushed within ROSTER_PUSH_DELAY_MS (a timer: later on a loaded machine).
    await until(() => applied.length > 0, "a push to the orderer's own members");
    await settle(100);
    expect(applied.at(-1)?.map((e) => e.id)).toEqual(["x"]);
    // A push that the shard took is not sent again and again (it did not say it holds it).
    expect(deliveries).toBeLessThan(5);
    // The room shrank to one object: x (say) left meanwhile, and the orderer now holds more users
    // than the setting (its members get counts only for now).
    own = null;
    store.map = { n: 1, epoch: 2 };
    orderer.heard(1, { connections: 0, users: 0 }, { v: 2, users: [] }, 0);
    // It reported no user: its link and its list go at once, not after RETIRED_KEEP_MS.
    await until(
      () => orderer.fanout.size === 0 && applied.at(-1)?.length === 0,
      "the retired shard's link and users gone",
      RETIRED_KEEP_MS - 1000,
    );
    expect(orderer.fanout.size).toBe(0);
    // No other object: no other object's user.
    expect(applied.at(-1)).toEqual([]);
  });
});
