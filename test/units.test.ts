import * as fc from "fast-check";
import * as v from "valibot";
import { describe, expect, it } from "vitest";
import { clientFrameSchema, jsonDepth, MAX_DATA_DEPTH, quickMessageFrame } from "../src/protocol";
import { byteLength } from "../src/room/bytes";
import { judgeConnection } from "../src/room/heartbeat";
import { Presence } from "../src/room/presence";
import { createBucket, take } from "../src/room/rate-limit";
import {
  acknowledge,
  heartbeatText,
  judgeUnread,
  MAX_PENDING,
  newNonce,
  newReadWindow,
  nextHeartbeat,
  recordHeartbeat,
} from "../src/room/reading";

const limits = { perSecond: 20, burst: 40, maxStrikes: 50 };

describe("token bucket", () => {
  it("allows a burst, then refuses until it refills at the rate", () => {
    const bucket = createBucket(40, 0);
    for (let i = 0; i < 40; i++) expect(take(bucket, 0, limits)).toBe("ok");
    expect(take(bucket, 0, limits)).toBe("refused");
    expect(take(bucket, 49, limits)).toBe("refused");
    expect(take(bucket, 100, limits)).toBe("ok");
  });

  it("is exhausted after maxStrikes refusals while the client keeps flooding", () => {
    const bucket = createBucket(40, 0);
    for (let i = 0; i < 40; i++) take(bucket, 0, limits);
    const results = [];
    // One frame every 2 ms: a token comes back every 50 ms, yet the client stays over its limit.
    for (let t = 2; results.at(-1) !== "exhausted" && t < 1000; t += 2) results.push(take(bucket, t, limits));
    expect(results.filter((r) => r === "ok").length).toBeGreaterThan(0);
    expect(results.filter((r) => r === "refused")).toHaveLength(49);
    expect(results.at(-1)).toBe("exhausted");
  });

  it("forgives strikes once the client slows down", () => {
    const bucket = createBucket(40, 0);
    for (let i = 0; i < 40; i++) take(bucket, 0, limits);
    for (let i = 0; i < 30; i++) take(bucket, 0, limits);
    expect(bucket.strikes).toBe(30);
    expect(take(bucket, 1000, limits)).toBe("ok");
    expect(bucket.strikes).toBe(0);
  });

  it("never holds more than the burst", () => {
    const bucket = createBucket(40, 0);
    take(bucket, 1_000_000, limits);
    expect(bucket.tokens).toBe(39);
  });
});

describe("heartbeat verdicts", () => {
  const base = { now: 100_000, exp: 200_000, lastActivity: 90_000, unechoedSince: undefined, timeoutMs: 75_000 };
  it("keeps an active connection with a valid token", () => {
    expect(judgeConnection(base)).toEqual({ action: "keep" });
  });
  it("closes 4401 at exp exactly, before anything else", () => {
    expect(judgeConnection({ ...base, exp: 100_000, lastActivity: 0 })).toMatchObject({ code: 4401 });
  });
  it("closes 4408 'not reading' once a heartbeat stays unechoed past the timeout, even while it sends", () => {
    expect(judgeConnection({ ...base, unechoedSince: 25_000 })).toEqual({ action: "keep" });
    expect(judgeConnection({ ...base, unechoedSince: 24_999 })).toEqual({
      action: "close",
      code: 4408,
      reason: "not reading",
    });
    // Nothing awaited: every heartbeat sent so far was echoed.
    expect(judgeConnection({ ...base, unechoedSince: undefined })).toEqual({ action: "keep" });
  });

  it("closes 4408 only past the timeout", () => {
    expect(judgeConnection({ ...base, lastActivity: 25_000 })).toEqual({ action: "keep" });
    expect(judgeConnection({ ...base, lastActivity: 24_999 })).toMatchObject({ code: 4408 });
  });
});

describe("unread bytes", () => {
  const budget = 1000;
  const at = (ms: number) => () => ms;
  // The oldest unechoed heartbeat went out at 40 s, the newest at 55 s: `since` is what counts.
  const awaiting = { since: 40_000, at: 55_000, nonce: "n" };
  /** `sent` bytes, `read` of them known read, and (with `awaiting`) a heartbeat sent just now. */
  const window = (sent: number, read = 0) => ({ sent, read, pending: [{ text: "H", at: 55_000, before: sent }] });
  const idle = (sent: number) => ({ ...newReadWindow(), sent });

  it("asks for an early heartbeat every quarter of the budget, up to MAX_PENDING awaited", () => {
    expect(judgeUnread(idle(250), undefined, budget, at(0))).toBe("ok");
    expect(judgeUnread(idle(251), undefined, budget, at(0))).toBe("probe");
    // Counted from the newest heartbeat sent, not from what is known read.
    const w = idle(300);
    recordHeartbeat(w, "H1", 1); // 2 bytes, from 300
    w.sent += 248;
    expect(judgeUnread(w, awaiting, budget, at(0))).toBe("ok");
    w.sent += 1;
    expect(judgeUnread(w, awaiting, budget, at(0))).toBe("probe");
    for (let i = 2; i <= MAX_PENDING; i++) recordHeartbeat(w, `H${i}`, i);
    w.sent += 300;
    expect(w.pending).toHaveLength(MAX_PENDING);
    expect(judgeUnread(w, awaiting, budget, at(0))).toBe("ok");
  });

  it("closes over the budget only once the oldest awaited heartbeat is 10 s late, and past four budgets at once", () => {
    // Over the budget, but the oldest heartbeat went out 10 s ago at most: a burst being read.
    expect(judgeUnread(window(1001), awaiting, budget, at(50_000))).toBe("ok");
    expect(judgeUnread(window(1001), awaiting, budget, at(50_001))).toBe("over");
    expect(judgeUnread(window(1000), awaiting, budget, at(99_999))).toBe("ok");
    // Four budgets: at once, however recent the heartbeat.
    const recent = { since: 50_000, at: 50_000, nonce: "n" };
    expect(judgeUnread(window(4000), recent, budget, at(50_000))).toBe("ok");
    expect(judgeUnread(window(4001), recent, budget, at(50_000))).toBe("over");
    expect(judgeUnread(idle(4001), undefined, budget, at(0))).toBe("over");
  });

  it("counts only what was sent after the last echoed heartbeat", () => {
    expect(judgeUnread(window(5000, 4200), awaiting, budget, at(90_000))).toBe("ok"); // 800 unread
    expect(judgeUnread(window(5201, 4200), awaiting, budget, at(90_000))).toBe("over");
  });

  it("takes the exact echo of any awaited heartbeat: read up to it, the wait goes on from the next", () => {
    const w = newReadWindow();
    w.sent = 300;
    recordHeartbeat(w, "H1", 1_000);
    w.sent += 200;
    recordHeartbeat(w, "H2", 2_000);
    w.sent += 100;
    recordHeartbeat(w, "H3", 3_000);
    const waiting = { since: 1_000, at: 3_000, nonce: "n3" };
    expect(acknowledge(w, waiting, "H4")).toBeUndefined();
    expect(acknowledge(w, waiting, " H2")).toBeUndefined();
    expect(acknowledge(w, waiting, new TextEncoder().encode("H2").buffer as ArrayBuffer)).toBeUndefined();
    // H2 (H1 skipped: its echo may have been refused or lost): read up to H2, H3 awaited from 3 s.
    expect(acknowledge(w, waiting, "H2")).toEqual({ awaiting: { since: 3_000, at: 3_000, nonce: "n3" } });
    expect(w.read).toBe(502);
    expect(acknowledge(w, waiting, "H1")).toBeUndefined(); // done with
    expect(acknowledge(w, waiting, "H3")).toEqual({ awaiting: undefined });
    expect(w.read).toBe(604);
    expect(w.pending).toEqual([]);
    expect(acknowledge(w, undefined, "H3")).toBeUndefined();
  });

  it("keeps track of MAX_PENDING heartbeats at most, dropping the oldest", () => {
    const w = newReadWindow();
    for (let i = 1; i <= MAX_PENDING + 2; i++) recordHeartbeat(w, `H${i}`, i);
    expect(w.pending.map((h) => h.text)).toEqual(Array.from({ length: MAX_PENDING }, (_, i) => `H${i + 3}`));
  });

  it("keeps the oldest unechoed heartbeat's time, and only the newest heartbeat's text", () => {
    const first = nextHeartbeat(undefined, 1000);
    expect(first.awaiting).toMatchObject({ since: 1000, at: 1000 });
    expect(JSON.parse(first.text)).toEqual({ type: "heartbeat", timestamp: 1000, nonce: first.awaiting.nonce });
    const second = nextHeartbeat(first.awaiting, 31_000);
    expect(second.awaiting).toMatchObject({ since: 1000, at: 31_000 });
    expect(second.text).toBe(heartbeatText(31_000, second.awaiting.nonce));
    expect(second.awaiting.nonce).not.toBe(first.awaiting.nonce);
  });
  it("makes nonces that cannot be guessed: 16 hex digits, no repeats in 10,000", () => {
    const nonces = new Set(Array.from({ length: 10_000 }, () => newNonce()));
    expect(nonces.size).toBe(10_000);
    for (const n of [...nonces].slice(0, 100)) expect(n).toMatch(/^[0-9a-f]{16}$/);
  });
  it("measures frames in UTF-8 bytes", () => {
    expect(byteLength('{"text":"abc"}')).toBe(14);
    expect(byteLength("é")).toBe(2);
    expect(byteLength("語")).toBe(3);
    expect(byteLength("😀")).toBe(4);
    expect(byteLength(new ArrayBuffer(7))).toBe(7);
  });
});

describe("presence", () => {
  it("counts connections per user and reports first and last", () => {
    const p = new Presence();
    expect(p.add({ id: "a", name: "A" })).toBe(true);
    expect(p.add({ id: "a", name: "A2" })).toBe(false);
    expect(p.add({ id: "b", name: "B" })).toBe(true);
    expect(p.list()).toEqual([
      { id: "a", name: "A2", connections: 2 },
      { id: "b", name: "B", connections: 1 },
    ]);
    expect(p.remove("a")).toBe(false);
    expect(p.remove("a")).toBe(true);
    expect(p.remove("a")).toBe(false);
    expect(p.online).toBe(1);
  });
});

describe("jsonDepth", () => {
  it("counts nesting without recursion, stopping early past the limit", () => {
    expect(jsonDepth(1)).toBe(0);
    expect(jsonDepth({})).toBe(1);
    expect(jsonDepth({ a: [{ b: 1 }] })).toBe(3);
    let deep: unknown = 0;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    expect(jsonDepth(deep)).toBe(MAX_DATA_DEPTH + 1);
  });
});

describe("the quick message check", () => {
  const schema = clientFrameSchema(4000);
  const messageLike = fc.record(
    {
      type: fc.constantFrom("message", "message", "ping", "Message"),
      text: fc.oneof(fc.string({ maxLength: 30 }), fc.constant("t".repeat(4001)), fc.integer(), fc.constant(null)),
      data: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constant(JSON.parse(`${"[".repeat(33)}${"]".repeat(33)}`))),
      id: fc.oneof(fc.string({ maxLength: 70 }), fc.integer()),
      to: fc.oneof(fc.string({ maxLength: 130 }), fc.constant(null)),
      extra: fc.jsonValue({ maxDepth: 1 }),
    },
    { requiredKeys: [] },
  );

  it("accepts only what the schema accepts, and returns what the schema returns", () => {
    let quick = 0;
    fc.assert(
      fc.property(fc.oneof(messageLike, fc.jsonValue({ maxDepth: 2 })), (raw) => {
        const fast = quickMessageFrame(raw, 4000);
        const slow = v.safeParse(schema, raw);
        if (fast === undefined) return;
        quick++;
        expect(slow.success).toBe(true);
        expect(fast).toEqual(slow.output);
      }),
      { numRuns: 5000, seed: 7 },
    );
    // The property was exercised on accepted frames, not only on refusals.
    expect(quick).toBeGreaterThan(20);
  });

  it("takes every well-formed message frame", () => {
    fc.assert(
      fc.property(
        fc.record(
          {
            text: fc.string({ maxLength: 50 }),
            data: fc.jsonValue({ maxDepth: 4 }),
            id: fc.string({ minLength: 1, maxLength: 64 }),
          },
          { requiredKeys: ["text"] },
        ),
        (fields) => {
          const raw = { type: "message", ...fields };
          expect(quickMessageFrame(raw, 4000)).toEqual(v.parse(schema, raw));
        },
      ),
      { numRuns: 1000, seed: 11 },
    );
  });
});
