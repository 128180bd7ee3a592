import { describe, expect, it } from "vitest";
import { parseConfig } from "../src/common/config";

const KEY = { JWT_SECRET: "k".repeat(32) };

function settingOf(env: Record<string, unknown>): string {
  const result = parseConfig(env);
  if (result.ok) throw new Error("expected a misconfiguration");
  return result.error.setting;
}

describe("configuration", () => {
  it("gives every option its documented default", () => {
    const result = parseConfig(KEY);
    expect(result.ok && result.config).toMatchObject({
      key: { kind: "secret" },
      issuer: undefined,
      audience: undefined,
      clockToleranceSeconds: 30,
      allowedOrigins: undefined,
      allowQueryToken: false,
      allowAnyAudience: false,
      maxConnectionsPerRoom: 1000,
      historyLimit: 1000,
      heartbeatIntervalMs: 30_000,
      heartbeatTimeoutMs: 75_000,
      maxTextLength: 4000,
      maxMessageBytes: 65_536,
      maxUnreadBytes: 16 * 1024 * 1024,
      rateLimitPerSecond: 20,
      rateLimitBurst: 40,
      rateLimitStrikes: 50,
      signalMaxBytes: 4096,
      signalRatePerSecond: 30,
      signalRateBurst: 60,
      presenceStateMaxBytes: 1024,
    });
  });

  it("derives the heartbeat timeout from the interval (2.5 intervals) unless set", () => {
    const derived = parseConfig({ ...KEY, HEARTBEAT_INTERVAL_MS: "10000" });
    expect(derived.ok && derived.config.heartbeatTimeoutMs).toBe(25_000);
    const set = parseConfig({ ...KEY, HEARTBEAT_INTERVAL_MS: "10000", HEARTBEAT_TIMEOUT_MS: "12000" });
    expect(set.ok && set.config.heartbeatTimeoutMs).toBe(12_000);
  });

  it("parses origins as a comma-separated list and booleans case-insensitively", () => {
    const result = parseConfig({
      ...KEY,
      ALLOWED_ORIGINS: " https://a.example ,https://b.example,",
      ALLOW_QUERY_TOKEN: "TRUE",
    });
    expect(result.ok && result.config.allowedOrigins?.exact).toEqual(
      new Set(["https://a.example", "https://b.example"]),
    );
    expect(result.ok && result.config.allowQueryToken).toBe(true);
  });

  it("normalizes origins (case, default port, trailing slash) and refuses entries that are not origins", () => {
    const result = parseConfig({ ...KEY, ALLOWED_ORIGINS: "HTTPS://App.Example.com/, http://localhost:80" });
    expect(result.ok && result.config.allowedOrigins?.exact).toEqual(
      new Set(["https://app.example.com", "http://localhost"]),
    );
    const bads = [
      "app.example.com",
      "https://app.example.com/path",
      "ftp://x.example",
      "*",
      "https://*",
      "https://*.com",
    ];
    for (const bad of [...bads, "https://a.*.example.com", "https://*app.example.com", "*.example.com"]) {
      expect(settingOf({ ...KEY, ALLOWED_ORIGINS: bad })).toBe("ALLOWED_ORIGINS");
    }
  });

  it("reads a wildcard origin as any subdomain, with its scheme and port exact", () => {
    const result = parseConfig({ ...KEY, ALLOWED_ORIGINS: "HTTPS://*.Example.com, http://*.dev.example:8080/" });
    expect(result.ok && result.config.allowedOrigins?.wildcards).toEqual([
      { scheme: "https:", suffix: ".example.com", port: "" },
      { scheme: "http:", suffix: ".dev.example", port: "8080" },
    ]);
  });

  it("refuses JWKS_URL or JWT_PUBLIC_KEY without JWT_AUDIENCE, naming JWT_AUDIENCE, unless ALLOW_ANY_AUDIENCE=true", () => {
    const pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----";
    for (const key of [{ JWKS_URL: "https://issuer.example/jwks.json" }, { JWT_PUBLIC_KEY: pem }]) {
      expect(settingOf(key)).toBe("JWT_AUDIENCE");
      expect(parseConfig({ ...key, JWT_AUDIENCE: "rooms" }).ok).toBe(true);
      const any = parseConfig({ ...key, ALLOW_ANY_AUDIENCE: "true" });
      expect(any.ok && any.config.allowAnyAudience).toBe(true);
    }
    // A secret is this service's own: any token it verifies was meant for it.
    expect(parseConfig(KEY).ok).toBe(true);
  });

  it("keeps rooms in one object by default; a threshold above the room limit is fine while sharding is off", () => {
    const result = parseConfig({ ...KEY, SHARD_GROW_AT: "2000" });
    expect(result.ok && [result.config.shardMax, result.config.shardGrowAt]).toEqual([1, 2000]);
  });

  it("treats an empty string as unset", () => {
    const result = parseConfig({ ...KEY, HISTORY_LIMIT: "", JWT_ISSUER: "" });
    expect(result.ok && result.config.historyLimit).toBe(1000);
  });

  it.each([
    [{ HISTORY_LIMIT: "lots" }, "HISTORY_LIMIT"],
    [{ HISTORY_LIMIT: "-1" }, "HISTORY_LIMIT"],
    [{ HISTORY_LIMIT: "1.5" }, "HISTORY_LIMIT"],
    [{ HISTORY_LIMIT: "100000" }, "HISTORY_LIMIT"],
    [{ MAX_CONNECTIONS_PER_ROOM: "0" }, "MAX_CONNECTIONS_PER_ROOM"],
    [{ HEARTBEAT_INTERVAL_MS: "10" }, "HEARTBEAT_INTERVAL_MS"],
    [{ HEARTBEAT_TIMEOUT_MS: "5000" }, "HEARTBEAT_TIMEOUT_MS"],
    [{ MAX_MESSAGE_BYTES: "99999999" }, "MAX_MESSAGE_BYTES"],
    [{ MAX_UNREAD_BYTES: "65536" }, "MAX_UNREAD_BYTES"],
    [{ MAX_UNREAD_BYTES: "2000000000" }, "MAX_UNREAD_BYTES"],
    // Fine alone, but too small next to the largest frame.
    [{ MAX_UNREAD_BYTES: "2097152", MAX_MESSAGE_BYTES: "1048576" }, "MAX_UNREAD_BYTES"],
    // One sender's full burst (1000 × 64 KiB) would pass the 4 × 1 MiB ceiling.
    [{ MAX_UNREAD_BYTES: "1048576", RATE_LIMIT_BURST: "1000" }, "MAX_UNREAD_BYTES"],
    [{ RATE_LIMIT_PER_SECOND: "fast" }, "RATE_LIMIT_PER_SECOND"],
    [{ RATE_LIMIT_BURST: "0" }, "RATE_LIMIT_BURST"],
    [{ RATE_LIMIT_STRIKES: "0" }, "RATE_LIMIT_STRIKES"],
    [{ MAX_TEXT_LENGTH: "x" }, "MAX_TEXT_LENGTH"],
    [{ ALLOW_QUERY_TOKEN: "yes" }, "ALLOW_QUERY_TOKEN"],
    [{ JWT_CLOCK_TOLERANCE_SECONDS: "3600" }, "JWT_CLOCK_TOLERANCE_SECONDS"],
    [{ JWKS_URL: "http://insecure.example/jwks" }, "JWKS_URL"],
    [{ ALLOW_ANY_AUDIENCE: "maybe" }, "ALLOW_ANY_AUDIENCE"],
    [{ SIGNAL_MAX_BYTES: "10" }, "SIGNAL_MAX_BYTES"],
    [{ SHARD_MAX: "0" }, "SHARD_MAX"],
    [{ SHARD_MAX: "65" }, "SHARD_MAX"],
    // A room whose objects fill up before the threshold would never grow.
    [{ SHARD_MAX: "4", SHARD_GROW_AT: "2000" }, "SHARD_GROW_AT"],
    [{ SHARD_MOVES_PER_SECOND: "0" }, "SHARD_MOVES_PER_SECOND"],
    [{ SHARD_SHRINK_AFTER_MS: "soon" }, "SHARD_SHRINK_AFTER_MS"],
    // A signal cap over the frame cap would be a 1009 close, not the documented invalid_message.
    [{ SIGNAL_MAX_BYTES: "8192", MAX_MESSAGE_BYTES: "4096" }, "SIGNAL_MAX_BYTES"],
    [{ SIGNAL_RATE_PER_SECOND: "0" }, "SIGNAL_RATE_PER_SECOND"],
    [{ SIGNAL_RATE_BURST: "many" }, "SIGNAL_RATE_BURST"],
    // Kept in every socket attachment of its user (16 KiB with the rest).
    [{ PRESENCE_STATE_MAX_BYTES: "16384" }, "PRESENCE_STATE_MAX_BYTES"],
    [{ PRESENCE_ROSTER_MAX: "-1" }, "PRESENCE_ROSTER_MAX"],
    [{ PRESENCE_ROSTER_MAX: "lots" }, "PRESENCE_ROSTER_MAX"],
  ])("names the setting of a bad value: %o", (env, setting) => {
    expect(settingOf({ ...KEY, ...env })).toBe(setting);
  });

  it("needs exactly one key source, and a secret of at least 32 bytes", () => {
    expect(settingOf({})).toBe("JWT_SECRET");
    expect(settingOf({ JWT_SECRET: "short" })).toBe("JWT_SECRET");
    expect(settingOf({ ...KEY, JWKS_URL: "https://issuer.example/jwks" })).toBe("JWT_SECRET");
    expect(settingOf({ JWT_PUBLIC_KEY: "not a pem" })).toBe("JWT_PUBLIC_KEY");
    const jwks = parseConfig({ JWKS_URL: "https://issuer.example/.well-known/jwks.json", JWT_AUDIENCE: "rooms" });
    expect(jwks.ok && jwks.config.key).toEqual({ kind: "jwks", url: "https://issuer.example/.well-known/jwks.json" });
  });

  it("never puts a secret's value in the error message", () => {
    const result = parseConfig({ JWT_SECRET: "tiny-secret" });
    expect(result.ok).toBe(false);
    expect(!result.ok && result.error.message).not.toContain("tiny-secret");
  });
});
