import { describe, expect, it } from "vitest";
import { createBucket, takeShared } from "../src/room/rate-limit";
import { pickShed, SHED_GRACE_MS } from "../src/room/shedding";
import { Users } from "../src/room/users";

describe("shedding slow readers over a budget", () => {
  const now = 100_000;
  const late = now - SHED_GRACE_MS - 1;
  const reader = (name: string, unread: number, awaitingSince: number | undefined) => ({ name, unread, awaitingSince });

  it("closes nobody within the budget", () => {
    expect(pickShed([reader("a", 900, late)], 900, 1000, now)).toEqual([]);
  });

  it("closes the late readers with the most unread first, until what can grow fits", () => {
    const readers = [reader("small", 100, late), reader("big", 800, late), reader("mid", 400, late)];
    expect(pickShed(readers, 1500, 1000, now).map((r) => r.name)).toEqual(["big"]);
    expect(pickShed(readers, 2000, 1000, now).map((r) => r.name)).toEqual(["big", "mid"]);
  });

  it("never closes a reader that keeps up (no heartbeat awaited, or one younger than the grace)", () => {
    const readers = [reader("even", 5000, undefined), reader("fresh", 5000, now - 10), reader("stalled", 10, late)];
    expect(pickShed(readers, 10_010, 1000, now).map((r) => r.name)).toEqual(["stalled"]);
  });
});

describe("per-user state", () => {
  const limits = {
    messages: { perSecond: 20, burst: 40, maxStrikes: 50 },
    signals: { perSecond: 30, burst: 60, maxStrikes: Number.POSITIVE_INFINITY },
    connectsPerMinute: 3,
    replayBytesPerMinute: 600,
  };

  it("allows connectsPerMinute connects at once, then answers the seconds until the next", () => {
    const users = new Users(limits);
    expect([users.takeConnect("u", 0), users.takeConnect("u", 0), users.takeConnect("u", 0)]).toEqual([
      undefined,
      undefined,
      undefined,
    ]);
    expect(users.takeConnect("u", 0)).toBe(20);
    expect(users.takeConnect("other", 0)).toBeUndefined();
    expect(users.takeConnect("u", 20_000)).toBeUndefined();
  });

  it("refills the replay allowance over a minute", () => {
    const users = new Users(limits);
    expect(users.replayAllowance("u", 0)).toBe(600);
    users.spendReplay("u", 600);
    expect(users.replayAllowance("u", 0)).toBe(0);
    expect(users.replayAllowance("u", 30_000)).toBe(300);
    expect(users.replayAllowance("u", 600_000)).toBe(600);
  });

  it("forgets idle users with no socket and nothing queued", () => {
    const users = new Users(limits);
    users.takeConnect("gone", 0);
    users.takeConnect("here", 0);
    users.prune(120_000, (id) => id === "here");
    // A forgotten user starts with a full allowance again; a kept one does not.
    expect(users.takeConnect("gone", 120_000)).toBeUndefined();
    expect(users.get("here", 120_000).connects.tokens).toBeLessThan(3);
  });

  it("refuses a connection's frame when its user's shared bucket is empty, as a strike on the connection", () => {
    const own = createBucket(40, 0);
    const shared = createBucket(2, 0);
    const ownLimits = { perSecond: 20, burst: 40, maxStrikes: 3 };
    const sharedLimits = { perSecond: 1, burst: 2, maxStrikes: 3 };
    const results = Array.from({ length: 5 }, () => takeShared(own, shared, 0, ownLimits, sharedLimits));
    expect(results).toEqual(["ok", "ok", "refused", "refused", "exhausted"]);
  });
});
