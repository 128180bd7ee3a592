/**
 * The test-only fault hook (src/worker/test-faults.ts, src/room/test-faults.ts) is unreachable while
 * TEST_FAULTS is off, as it is by default and in this suite: the route answers 404 with a JSON body
 * even to an admin, and the object's RPC refuses. (The soak, test/e2e/shard-soak.e2e.ts, uses it on.)
 */
import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../src/common/config";
import { errorOf, mintToken, roomStub, uniqueRoom } from "./helpers";

function postFault(room: string, body: unknown, token?: string) {
  return SELF.fetch(`https://rooms.test/api/test/rooms/${room}/faults`, {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      ...(token === undefined ? {} : { Authorization: `Bearer ${token}` }),
    },
    body: JSON.stringify(body),
  });
}

describe("test fault hook, off by default", () => {
  it("is off unless TEST_FAULTS is exactly true, and a bad value is refused at start", () => {
    const base = { JWT_SECRET: "x".repeat(32) };
    const off = loadConfig(base);
    expect(off.ok && off.config.testFaults).toBe(false);
    const on = loadConfig({ ...base, TEST_FAULTS: "true" });
    expect(on.ok && on.config.testFaults).toBe(true);
    const bad = loadConfig({ ...base, TEST_FAULTS: "yes" });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error.setting).toBe("TEST_FAULTS");
  });

  it("the route answers 404 not_found with a JSON body, even to an admin with a valid fault", async () => {
    const room = uniqueRoom("faults");
    const admin = await mintToken({ sub: "ops", role: "admin" });
    for (const body of [
      { fault: "reset", shard: 0 },
      { fault: "lose_deliveries", count: 1 },
    ]) {
      const response = await postFault(room, body, admin);
      expect(response.status).toBe(404);
      expect(response.headers.get("Content-Type")).toMatch(/^application\/json/);
      expect((await errorOf(response)).code).toBe("not_found");
    }
    expect((await errorOf(await postFault(room, { fault: "reset", shard: 0 }))).code).toBe("not_found");
  });

  it("the object's RPC refuses, and the object keeps working", async () => {
    const room = uniqueRoom("faults");
    const stub = roomStub(room);
    // Settled here (an RPC's rejection is reported unhandled if only `expect` awaits it).
    const outcome = (call: Promise<void>) =>
      call.then(
        () => "applied",
        (error: unknown) => String(error),
      );
    expect(await outcome(stub.testFault({ fault: "reset", shard: 0 }))).toMatch(/test faults are off/);
    expect(await outcome(stub.testFault({ fault: "lose_deliveries", count: 3 }))).toMatch(/test faults are off/);
    expect((await stub.info()).seq).toBe(0);
  });
});
