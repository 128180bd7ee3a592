import { describe, expect, it } from "vitest";
import { closedAfterWelcome } from "../../src/client/closes";

describe("what a close after the welcome means", () => {
  it("4307 (moved to another of the room's objects): reconnect at once, reason moved", () => {
    expect(closedAfterWelcome(4307, "moved: reconnect", false)).toEqual({
      retry: { reason: "moved", closeCode: 4307, message: "moved: reconnect" },
      isImmediate: true,
    });
  });

  it("other drops keep the backoff", () => {
    expect(closedAfterWelcome(4408, "not reading", true)).toEqual({
      retry: { reason: "dropped", closeCode: 4408, message: "not reading" },
    });
  });
});
