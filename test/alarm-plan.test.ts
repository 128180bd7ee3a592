import { describe, expect, it } from "vitest";
import { alarmForExpiry, isRoundDue, nextAlarmAt, roundSlackMs } from "../src/room/alarm-plan";

describe("alarm plan", () => {
  it("runs the heartbeat round when it is due, a little early, or when its time is unknown", () => {
    expect(isRoundDue(30_000, 30_000, 30_000)).toBe(true);
    expect(isRoundDue(31_000, 30_000, 30_000)).toBe(true);
    expect(isRoundDue(29_000, 30_000, 30_000)).toBe(true); // within the slack
    expect(isRoundDue(28_999, 30_000, 30_000)).toBe(false);
    expect(isRoundDue(2_000, 30_000, 30_000)).toBe(false); // a wake for an expiry
    expect(isRoundDue(0, undefined, 30_000)).toBe(true);
    expect(roundSlackMs(1_000)).toBe(100);
  });

  it("is idempotent: a repeated wake after a round finds the next one not due", () => {
    const now = 30_000;
    const next = now + 30_000;
    expect(isRoundDue(now + 5, next, 30_000)).toBe(false);
  });

  it("wakes at the earliest of the round and every live expiry, never in the past", () => {
    expect(nextAlarmAt(0, 30_000, [])).toBe(30_000);
    expect(nextAlarmAt(0, 30_000, [50_000, 2_000, 9_000])).toBe(2_000);
    expect(nextAlarmAt(10_000, 30_000, [5_000])).toBe(10_000);
    expect(nextAlarmAt(40_000, 30_000, [])).toBe(40_000);
  });

  it("moves the alarm on a connect or refresh only for a sooner expiry", () => {
    expect(alarmForExpiry(30_000, 2_000, 0)).toBe(2_000);
    expect(alarmForExpiry(30_000, 60_000, 0)).toBeUndefined();
    expect(alarmForExpiry(30_000, 500, 1_000)).toBe(1_000);
  });
});
