/** `Liveness` on its own, on fake timers: when a connection counts as dead, and when not. */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Liveness, type LivenessOptions } from "../../src/client/liveness";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

function watch(overrides: Partial<LivenessOptions> = {}) {
  const pings: number[] = [];
  const deaths: string[] = [];
  const liveness = new Liveness({
    pingEveryMs: 1_000,
    pongTimeoutMs: 3_000,
    silentAfterMs: 60_000,
    closingGraceMs: 5_000,
    ping: () => {
      pings.push(Date.now());
      return true;
    },
    isClosing: () => false,
    onDead: (why) => deaths.push(why),
    ...overrides,
  });
  return { liveness, pings, deaths };
}

describe("Liveness", () => {
  it("stays alive while every ping is answered", () => {
    const { liveness, pings, deaths } = watch();
    for (let i = 0; i < 20; i++) {
      vi.advanceTimersByTime(1_000);
      liveness.onFrame(true);
    }
    expect(pings).toHaveLength(20);
    expect(deaths).toEqual([]);
    liveness.stop();
  });

  it("is dead once a ping goes unanswered for pongTimeoutMs, and pings no more meanwhile", () => {
    const { pings, deaths } = watch();
    vi.advanceTimersByTime(1_000); // the first ping
    vi.advanceTimersByTime(2_999);
    expect(deaths).toEqual([]);
    expect(pings).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(deaths).toHaveLength(1);
    expect(deaths[0]).toContain("no pong");
    vi.advanceTimersByTime(10_000);
    expect(deaths).toHaveLength(1);
  });

  it("counts other frames as answers: a pong queued behind a long replay is late, not lost", () => {
    const { liveness, deaths } = watch();
    vi.advanceTimersByTime(1_000);
    for (let i = 0; i < 10; i++) {
      vi.advanceTimersByTime(2_000);
      liveness.onFrame(false);
    }
    expect(deaths).toEqual([]);
    vi.advanceTimersByTime(3_000);
    expect(deaths).toHaveLength(1);
  });

  it("is dead when only pongs come for silentAfterMs (the link is up, the room is not)", () => {
    const { liveness, deaths } = watch({ silentAfterMs: 5_000 });
    for (let i = 0; i < 6; i++) {
      vi.advanceTimersByTime(1_000);
      liveness.onFrame(true);
    }
    expect(deaths).toHaveLength(1);
    expect(deaths[0]).toContain("no frame");
  });

  it("gives a closing socket closingGraceMs for its close event, without pinging it", () => {
    const { pings, deaths } = watch({ isClosing: () => true });
    vi.advanceTimersByTime(5_999);
    expect(deaths).toEqual([]);
    vi.advanceTimersByTime(1_001);
    expect(deaths).toEqual(["the close never finished"]);
    expect(pings).toEqual([]);
  });
});
