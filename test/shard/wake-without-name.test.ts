/**
 * An object of a sharded room woken first by its alarm after a process restart: local workerd
 * (wrangler 4.86) then builds it from its id alone, and `ctx.id.name` is undefined. It must still
 * know which room and which object it is. It did not: every object took itself for the orderer of
 * room "", shards redirected their members back and forth until the Worker gave up with 503
 * `room_busy`, for as long as that instance lived (the soak's clients stuck after `process_restart`,
 * docs/scaling.md "Soak"). The pool keeps names across evictions, so the nameless wake is built here
 * by hand: the object's sharding part built on its real state with an id that has no name.
 */
import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { Connections } from "../../src/room/connections";
import type { History } from "../../src/room/history";
import { Sharding } from "../../src/room/room-sharding";
import { objectOf, twoShardRoom } from "./support";

/** The object's own state, but with an id that has no name (as at a nameless wake). */
function nameless(state: DurableObjectState): DurableObjectState {
  const id = {
    name: undefined,
    toString: () => state.id.toString(),
    equals: (o: DurableObjectId) => state.id.equals(o),
  };
  return new Proxy(state, {
    get(target, key) {
      if (key === "id") return id;
      const value = Reflect.get(target, key, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

describe("sharded rooms: an object woken without its name", () => {
  it("a shard still knows it is that room's shard k, and the orderer that room's orderer", async () => {
    const { room } = await twoShardRoom();
    const roleOf = (k: number) =>
      runInDurableObject(objectOf(room, k), (_i, state) => {
        const sharding = new Sharding(nameless(state), env, undefined, {
          connections: () =>
            ({ live: () => [], liveCount: () => 0, broadcast: () => undefined }) as unknown as Connections,
          online: () => 0,
          history: { latestSeq: 0 } as History,
        });
        return { room: sharding.room, k: sharding.k, role: sharding.status().role, n: sharding.map.n };
      });
    expect(await roleOf(1)).toEqual({ room, k: 1, role: "shard", n: 2 });
    expect(await roleOf(0)).toEqual({ room, k: 0, role: "orderer", n: 2 });
  });
});
