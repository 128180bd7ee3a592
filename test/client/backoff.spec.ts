import { describe, expect, it } from "vitest";
import { backoffCeiling, backoffDelay, DEFAULT_BACKOFF, resolveBackoff } from "../../src/client/index";

describe("backoff", () => {
  it("doubles the ceiling per attempt up to the cap", () => {
    const o = resolveBackoff({ initialDelayMs: 500, maxDelayMs: 5_000 });
    expect([1, 2, 3, 4, 5, 6, 20].map((n) => backoffCeiling(n, o))).toEqual([
      500, 1_000, 2_000, 4_000, 5_000, 5_000, 5_000,
    ]);
  });

  it("keeps each delay between (1 − jitter) × ceiling and the ceiling", () => {
    const o = resolveBackoff({ initialDelayMs: 1_000, jitter: 0.5 });
    expect(backoffDelay(1, o, () => 0)).toBe(1_000);
    expect(backoffDelay(1, o, () => 0.999_999)).toBe(500);
    expect(backoffDelay(3, o, () => 0.5)).toBe(3_000);
    for (let i = 0; i < 1_000; i++) {
      const attempt = 1 + (i % 8);
      const delay = backoffDelay(attempt, o);
      const ceiling = backoffCeiling(attempt, o);
      expect(delay).toBeGreaterThanOrEqual(ceiling / 2);
      expect(delay).toBeLessThanOrEqual(ceiling);
    }
  });

  it("is exact without jitter", () => {
    const o = resolveBackoff({ initialDelayMs: 100, factor: 3, jitter: 0 });
    expect([1, 2, 3].map((n) => backoffDelay(n, o))).toEqual([100, 300, 900]);
  });

  it("has documented defaults and refuses impossible settings", () => {
    expect(DEFAULT_BACKOFF).toEqual({
      initialDelayMs: 500,
      maxDelayMs: 30_000,
      factor: 2,
      jitter: 0.5,
      maxAttempts: Number.POSITIVE_INFINITY,
    });
    expect(() => resolveBackoff({ jitter: 1.5 })).toThrow(TypeError);
    expect(() => resolveBackoff({ factor: 0.5 })).toThrow(TypeError);
    expect(() => resolveBackoff({ initialDelayMs: 10, maxDelayMs: 5 })).toThrow(TypeError);
    expect(() => resolveBackoff({ maxAttempts: -1 })).toThrow(TypeError);
    expect(() => resolveBackoff({ initialDelayMs: Number.NaN })).toThrow(TypeError);
  });
});
