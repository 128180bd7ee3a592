/**
 * The orderer growing back to n right after it shrank from n (docs/scaling.md): the retired shard,
 * still moving its members out, keeps its delivery link whatever becomes of the attach.
 * The orderer is driven directly, with fake shards, so that each step happens exactly when wanted.
 */
import { describe, expect, it } from "vitest";
import { Orderer } from "../../src/room/orderer";
import type { ShardLog } from "../../src/room/shard-log";
import type { ShardMap } from "../../src/room/shard-map";
import type { Attach, Counts, DeliverBatch } from "../../src/room/shard-rpc";
import { settle, until } from "../helpers";

function harness(attach: (a: Attach) => Promise<void>) {
  const store = {
    map: { n: 2, epoch: 1 } as ShardMap | undefined,
    setMap(map: ShardMap) {
      store.map = map;
    },
  };
  const delivered: Array<{ k: number; batch: DeliverBatch }> = [];
  const shardCounts = new Map<number, Counts>([[1, { connections: 1, users: 1 }]]);
  let own: Counts = { connections: 0, users: 0 };
  let latest = 0;
  const orderer = new Orderer(
    store as unknown as ShardLog,
    { shardMax: 4, shardGrowAt: 3, shardShrinkAfterMs: 20 },
    {
      port: (k) => ({
        deliver: async (batch: DeliverBatch) => {
          delivered.push({ k, batch });
          return {
            last: batch.from + batch.frames.length - 1,
            counts: shardCounts.get(k) ?? { connections: 0, users: 0 },
          };
        },
        attach,
      }),
      latest: () => latest,
      own: () => own,
      onMap: () => undefined,
      broadcast: () => undefined,
      roster: { own: () => [], apply: () => undefined, max: 100 },
    },
  );
  return {
    orderer,
    store,
    delivered,
    shardCounts,
    setOwn(c: Counts) {
      own = c;
      orderer.reported(0, c);
    },
    commit(seq: number) {
      latest = seq;
      orderer.fanout.committed([{ seq, ts: 0, userId: "x", messageId: undefined, frame: `{"seq":${seq}}` }]);
    },
  };
}

/** Shrinks 2 → 1 while shard 1 still holds one socket (its members are being moved). */
async function shrunk(h: ReturnType<typeof harness>): Promise<void> {
  h.orderer.reported(1, { connections: 1, users: 1 });
  // After shardShrinkAfterMs (20 ms here): a timer, later on a loaded machine.
  await until(() => h.store.map?.n === 1, "the shrink to 1");
  expect(h.store.map).toEqual({ n: 1, epoch: 2 });
}

const framesTo = (h: ReturnType<typeof harness>, k: number) =>
  h.delivered.filter((d) => d.k === k).flatMap((d) => d.batch.frames);

describe("orderer: growing back right after a shrink", () => {
  it("a failed attach of the retired shard's index leaves that draining shard its delivery link", async () => {
    const h = harness(() => Promise.reject(new Error("attach failed (test)")));
    await shrunk(h);
    h.commit(1);
    await until(() => framesTo(h, 1).length > 0, "a delivery to shard 1");
    expect(framesTo(h, 1)).toEqual(['{"seq":1}']);
    // Enough sockets to grow back to 2: the attach of shard 1 fails.
    h.setOwn({ connections: 3, users: 3 });
    await settle(20);
    expect(h.store.map).toEqual({ n: 1, epoch: 2 });
    h.commit(2);
    // Its members still get every frame while they are moved.
    await until(() => framesTo(h, 1).length > 1, "a second delivery to shard 1");
    expect(framesTo(h, 1)).toEqual(['{"seq":1}', '{"seq":2}']);
  });

  it("a retired shard reporting its last socket gone while it is being attached again keeps its new link", async () => {
    let finish: () => void = () => undefined;
    const h = harness(() => new Promise<void>((resolve) => (finish = resolve)));
    await shrunk(h);
    h.setOwn({ connections: 3, users: 3 });
    await settle(10);
    // While the attach is under way, the retired shard's last member has moved out.
    h.shardCounts.set(1, { connections: 0, users: 0 });
    h.orderer.reported(1, { connections: 0, users: 0 });
    finish();
    await until(() => h.store.map?.n === 2, "the growth back to 2");
    expect(h.store.map).toEqual({ n: 2, epoch: 3 });
    h.commit(1);
    await until(() => framesTo(h, 1).includes('{"seq":1}'), "seq 1 delivered to shard 1");
  });
});
