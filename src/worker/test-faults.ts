/**
 * Test only, never in production: `POST /api/test/rooms/:room/faults` injects one fault into a
 * sharded room (src/room/test-faults.ts), for the soak (docs/scaling.md "Soak"). It exists only
 * while TEST_FAULTS is "true" (default false); otherwise it answers 404 `not_found` like any unknown
 * route, before looking at the token. When on, it takes an admin token for the room.
 *
 * @example
 * curl -sX POST http://127.0.0.1:8787/api/test/rooms/lobby/faults -H "Authorization: Bearer $ADMIN" \
 *   -H "Content-Type: application/json" -d '{"fault":"reset","shard":3}'
 * # {"room":"lobby","fault":"reset","shard":3}
 */
import { Hono } from "hono";
import * as v from "valibot";
import { HttpError } from "../common/errors";
import { shardName } from "../room/shard-map";
import { faultTarget, TestFaultSchema } from "../room/test-faults";
import { type ApiEnv, authorize, invalid, readJson, roomParam } from "./api";

const MAX_BODY_BYTES = 1024;

export const testFaults = new Hono<ApiEnv>();

testFaults.post("/rooms/:room/faults", async (c) => {
  if (!c.get("config").testFaults) throw new HttpError("not_found", "no such route");
  const room = roomParam(c);
  await authorize(c, room, "admin");
  const parsed = v.safeParse(TestFaultSchema, await readJson(c, MAX_BODY_BYTES));
  if (!parsed.success) throw invalid(parsed.issues, "body", "the fault is invalid");
  const fault = parsed.output;
  const k = faultTarget(fault);
  const stub = c.env.ROOMS.get(c.env.ROOMS.idFromName(shardName(room, k)));
  try {
    await stub.testFault(fault);
  } catch (error) {
    // A reset ends the object in the middle of the call: its caller sees the call fail.
    if (fault.fault !== "reset") throw error;
  }
  return c.json({ room, ...fault, shard: k });
});
