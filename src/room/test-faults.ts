/**
 * Test-only fault injection for a sharded room (README "Configuration": TEST_FAULTS, off by default,
 * never in production; docs/scaling.md "Soak"). The Worker's admin-only route
 * (src/worker/test-faults.ts) calls `Room.testFault` on the object a fault belongs to; both refuse
 * everything while TEST_FAULTS is not "true".
 */
import * as v from "valibot";
import type { Fanout } from "./fanout";

const ShardIndexSchema = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(63));
const CountSchema = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(10_000));

/** One fault. `shard` 0 is the orderer. */
export const TestFaultSchema = v.variant("fault", [
  /** The object loses its memory and every socket, as a crash would (its storage stays). */
  v.strictObject({ fault: v.literal("reset"), shard: ShardIndexSchema }),
  /** The orderer's next `count` deliveries with frames fail as if the call was lost. */
  v.strictObject({ fault: v.literal("lose_deliveries"), count: CountSchema }),
  /** The orderer's next `count` deliveries with frames are sent twice. */
  v.strictObject({ fault: v.literal("repeat_deliveries"), count: CountSchema }),
  /** Shard `shard`'s next `count` submitBatch calls reach the orderer, but their answers are lost. */
  v.strictObject({
    fault: v.literal("lose_submit_answers"),
    shard: v.pipe(ShardIndexSchema, v.minValue(1)),
    count: CountSchema,
  }),
]);
export type TestFault = v.InferOutput<typeof TestFaultSchema>;

/** The object of the room a fault is applied in (0: the orderer). */
export function faultTarget(fault: TestFault): number {
  return "shard" in fault ? fault.shard : 0;
}

export interface FaultParts {
  abort(reason: string): void;
  fanout(): Fanout;
  /** A shard's forwarder (src/room/shard-forwarder.ts): its next answers can be lost. */
  forwarder(): { loseAnswers: number };
}

/** Applies `fault` in this object. */
export function applyFault(fault: TestFault, parts: FaultParts): void {
  switch (fault.fault) {
    case "reset":
      parts.abort("reset (test fault)");
      return;
    case "lose_deliveries":
      parts.fanout().failNext = fault.count;
      return;
    case "repeat_deliveries":
      parts.fanout().repeatNext = fault.count;
      return;
    case "lose_submit_answers":
      parts.forwarder().loseAnswers = fault.count;
      return;
  }
}
