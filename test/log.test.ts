import { afterEach, describe, expect, it, vi } from "vitest";
import { parseConfig } from "../src/common/config";
import { log, setLogLevel } from "../src/common/log";

describe("LOG_LEVEL", () => {
  afterEach(() => {
    setLogLevel("debug"); // what the rest of the workerd suite runs with (vitest.config.ts)
    vi.restoreAllMocks();
  });

  it("defaults to info, and refuses anything but debug or info naming the setting", () => {
    const parsed = parseConfig({ JWT_SECRET: "k".repeat(32) });
    expect(parsed.ok && parsed.config.logLevel).toBe("info");
    const bad = parseConfig({ JWT_SECRET: "k".repeat(32), LOG_LEVEL: "verbose" });
    expect(!bad.ok && bad.error.setting).toBe("LOG_LEVEL");
  });

  it("leaves out per-connection (debug) lines at info, and always writes refusals, warnings and errors", () => {
    const out = vi.spyOn(console, "log").mockImplementation(() => {});
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    setLogLevel("info");
    log("debug", "connection_open", {});
    log("info", "gate_refused", {});
    log("warn", "slow_consumer", {});
    expect(out.mock.calls.map((c) => JSON.parse(String(c[0])).event)).toEqual(["gate_refused"]);
    expect(warn).toHaveBeenCalledTimes(1);
    setLogLevel("debug");
    log("debug", "connection_open", {});
    expect(out).toHaveBeenCalledTimes(2);
  });
});
