/**
 * Settings: every option is an env var (a `[vars]` entry or a secret) with a safe default, parsed
 * once per isolate with valibot. A bad value is a `ConfigError` naming the setting; the Worker answers
 * it as 500 `server_misconfigured` instead of crashing.
 */
import * as v from "valibot";
import { HARD_FACTOR } from "../room/reading";
import { type AllowedOrigins, parseAllowedOrigins } from "../worker/origins";
import { log, setLogLevel } from "./log";
import { parseWebhookSettings, type WebhookSettings } from "./webhook-settings";

/** A whole number written in decimal, within [min, max]. */
function whole(min: number, max: number) {
  return v.pipe(
    v.string(),
    v.trim(),
    v.regex(/^\d+$/, "must be a whole number"),
    v.transform(Number),
    v.minValue(min, `must be at least ${min}`),
    v.maxValue(max, `must be at most ${max}`),
  );
}

function integer(fallback: number, min: number, max: number) {
  return v.optional(whole(min, max), String(fallback));
}

function boolean(fallback: boolean) {
  return v.optional(
    v.pipe(v.string(), v.trim(), v.toLowerCase(), v.picklist(["true", "false"], "must be true or false")),
    String(fallback),
  );
}

function text() {
  return v.optional(v.pipe(v.string(), v.trim(), v.minLength(1, "must not be empty")));
}

const EnvSchema = v.object({
  JWT_SECRET: v.optional(
    v.pipe(
      v.string(),
      v.check((s) => new TextEncoder().encode(s).length >= 32, "must be at least 32 bytes"),
    ),
  ),
  JWKS_URL: v.optional(v.pipe(v.string(), v.url("must be a URL"), v.startsWith("https://", "must use https"))),
  JWT_PUBLIC_KEY: v.optional(v.pipe(v.string(), v.includes("-----BEGIN PUBLIC KEY-----", "must be an SPKI PEM"))),
  JWT_ISSUER: text(),
  JWT_AUDIENCE: text(),
  JWT_CLOCK_TOLERANCE_SECONDS: integer(30, 0, 300),
  ALLOWED_ORIGINS: text(),
  ALLOW_QUERY_TOKEN: boolean(false),
  ALLOW_ANY_AUDIENCE: boolean(false),
  MAX_CONNECTIONS_PER_ROOM: integer(1000, 1, 32_768),
  HISTORY_LIMIT: integer(1000, 0, 10_000),
  HEARTBEAT_INTERVAL_MS: integer(30_000, 1000, 3_600_000),
  HEARTBEAT_TIMEOUT_MS: v.optional(whole(1000, 36_000_000)),
  MAX_TEXT_LENGTH: integer(4000, 1, 1_000_000),
  MAX_MESSAGE_BYTES: integer(65_536, 64, 1_048_576),
  MAX_UNREAD_BYTES: integer(16_777_216, 1_048_576, 1_073_741_824),
  RATE_LIMIT_PER_SECOND: integer(20, 1, 100_000),
  RATE_LIMIT_BURST: integer(40, 1, 100_000),
  RATE_LIMIT_STRIKES: integer(50, 1, 100_000),
  MAX_CONNECTIONS_PER_USER: integer(10, 1, 32_768),
  CONNECTS_PER_USER_PER_MINUTE: integer(30, 1, 100_000),
  USER_RATE_LIMIT_PER_SECOND: v.optional(whole(1, 100_000)),
  USER_RATE_LIMIT_BURST: v.optional(whole(1, 100_000)),
  ROOM_MAX_QUEUED_BYTES: integer(64 * 1024 * 1024, 1_048_576, 1_073_741_824),
  REPLAY_BYTES_PER_USER_PER_MINUTE: integer(32 * 1024 * 1024, 0, 1_073_741_824),
  PRESENCE_GRACE_MS: integer(5000, 0, 60_000),
  SIGNAL_MAX_BYTES: integer(4096, 64, 1_048_576),
  SIGNAL_RATE_PER_SECOND: integer(30, 1, 100_000),
  SIGNAL_RATE_BURST: integer(60, 1, 100_000),
  // Kept in every socket attachment of its user, which holds 16 KiB with the rest.
  PRESENCE_STATE_MAX_BYTES: integer(1024, 2, 8192),
  // Above it a room sends counts, not the roster (src/room/roster-mode.ts); Pusher caps presence at 100.
  PRESENCE_ROSTER_MAX: integer(100, 0, 32_768),
  // A big room spread over several objects (docs/scaling.md); 1: never.
  SHARD_MAX: integer(1, 1, 64),
  SHARD_GROW_AT: integer(800, 1, 32_768),
  SHARD_MOVES_PER_SECOND: integer(100, 1, 10_000),
  SHARD_SHRINK_AFTER_MS: integer(60_000, 0, 3_600_000),
  USAGE_STATS: boolean(false),
  LOG_LEVEL: v.optional(
    v.pipe(v.string(), v.trim(), v.toLowerCase(), v.picklist(["debug", "info"], "must be debug or info")),
    "info",
  ),
  WEBHOOK_URL: text(),
  WEBHOOK_SECRET: v.optional(v.string()),
  WEBHOOK_EVENTS: text(),
  WEBHOOK_RETRY_BASE_SECONDS: integer(10, 1, 3600),
  // Test-only fault injection (src/worker/test-faults.ts); never in production.
  TEST_FAULTS: boolean(false),
});

export type KeySource =
  | { kind: "secret"; secret: string }
  | { kind: "jwks"; url: string }
  | { kind: "public_key"; pem: string };

export interface Config {
  key: KeySource;
  issuer: string | undefined;
  audience: string | undefined;
  clockToleranceSeconds: number;
  /** `undefined` allows every origin. */
  allowedOrigins: AllowedOrigins | undefined;
  allowQueryToken: boolean;
  /** A JWKS or public key with no JWT_AUDIENCE was allowed on purpose. */
  allowAnyAudience: boolean;
  maxConnectionsPerRoom: number;
  historyLimit: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  maxTextLength: number;
  maxMessageBytes: number;
  /** Bytes a connection may leave unread (sent since its last echoed heartbeat) before 4408. */
  maxUnreadBytes: number;
  rateLimitPerSecond: number;
  rateLimitBurst: number;
  rateLimitStrikes: number;
  /** Sockets one user may hold in one room, closing ones included (the runtime still holds them). */
  maxConnectionsPerUser: number;
  /** New connects one user may make per room per minute. */
  connectsPerUserPerMinute: number;
  /** One bucket per user per room, shared by all that user's connections. */
  userRateLimitPerSecond: number;
  userRateLimitBurst: number;
  /** Bytes a room may have queued to readers, over all its sockets, before it sheds the slowest. */
  roomMaxQueuedBytes: number;
  /** Resume replay bytes one user may be sent per room per minute. */
  replayBytesPerUserPerMinute: number;
  /** How long a user's last connection may be gone before the room announces its `leave`. */
  presenceGraceMs: number;
  /** Above this many users a room sends counts only (`occupancy`), not the roster and its join/leave. */
  presenceRosterMax: number;
  /** Largest `signal` frame, in UTF-8 bytes (≤ MAX_MESSAGE_BYTES). */
  signalMaxBytes: number;
  /** One signal bucket per user per room, apart from the message buckets. */
  signalRatePerSecond: number;
  signalRateBurst: number;
  /** Largest presence state, as JSON in UTF-8 bytes. */
  presenceStateMaxBytes: number;
  /** Most objects one room may spread over (docs/scaling.md); 1 keeps every room in one object. */
  shardMax: number;
  /** A room of n shards grows to n+1 when it holds n × this many sockets. */
  shardGrowAt: number;
  /** Sockets an object closes per second with 4307 (moved) after the room grew or shrank. */
  shardMovesPerSecond: number;
  /** A room of n shards shrinks to n−1 after holding at most (n−1) × SHARD_GROW_AT ÷ 2 sockets this long. */
  shardShrinkAfterMs: number;
  /** `debug` adds a line per connection open and close; `info` (the default) leaves them out. */
  logLevel: "debug" | "info";
  /** Bench only: count requests, RPC calls and SQLite rows (src/worker/usage.ts). */
  usageStats: boolean;
  /** Where room events are posted (README "Webhooks"); `undefined`: webhooks are off. */
  webhooks: WebhookSettings | undefined;
  /** Test only: the fault-injection route and RPC answer (src/worker/test-faults.ts); off by default. */
  testFaults: boolean;
}

/** A setting with a bad value. `setting` names it; `message` says what is wrong, never the value. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(
    readonly setting: string,
    message: string,
  ) {
    super(`${setting} ${message}`);
  }
}

export type ConfigResult = { ok: true; config: Config } | { ok: false; error: ConfigError };

/** Parses raw env vars. Pure: use `loadConfig` for the cached version. */
export function parseConfig(env: Record<string, unknown>): ConfigResult {
  const raw: Record<string, unknown> = {};
  // Wrangler passes an empty string for a var set to ""; treat it as unset.
  for (const key of Object.keys(EnvSchema.entries)) {
    const value = env[key];
    if (value !== undefined && value !== "") raw[key] = typeof value === "string" ? value : String(value);
  }
  const parsed = v.safeParse(EnvSchema, raw);
  if (!parsed.success) {
    const issue = parsed.issues[0];
    return { ok: false, error: new ConfigError(v.getDotPath(issue) ?? "config", issue.message) };
  }
  const e = parsed.output;
  const keys = [
    e.JWT_SECRET !== undefined && ({ kind: "secret", secret: e.JWT_SECRET } as const),
    e.JWKS_URL !== undefined && ({ kind: "jwks", url: e.JWKS_URL } as const),
    e.JWT_PUBLIC_KEY !== undefined && ({ kind: "public_key", pem: e.JWT_PUBLIC_KEY } as const),
  ].filter((k) => k !== false);
  const key = keys[0];
  if (key === undefined) {
    return {
      ok: false,
      error: new ConfigError("JWT_SECRET", "is not set (set one of JWT_SECRET, JWKS_URL or JWT_PUBLIC_KEY)"),
    };
  }
  if (keys.length > 1) {
    return {
      ok: false,
      error: new ConfigError("JWT_SECRET", "conflicts: set only one of JWT_SECRET, JWKS_URL or JWT_PUBLIC_KEY"),
    };
  }
  const heartbeatTimeoutMs = e.HEARTBEAT_TIMEOUT_MS ?? Math.round(e.HEARTBEAT_INTERVAL_MS * 2.5);
  if (heartbeatTimeoutMs < e.HEARTBEAT_INTERVAL_MS) {
    return {
      ok: false,
      error: new ConfigError("HEARTBEAT_TIMEOUT_MS", "must be at least HEARTBEAT_INTERVAL_MS"),
    };
  }
  // Room for several of the largest frames between two read acknowledgements, and under the hard
  // ceiling for one member's full burst of them: else one member could get every reader closed.
  if (e.MAX_UNREAD_BYTES < 8 * e.MAX_MESSAGE_BYTES) {
    return {
      ok: false,
      error: new ConfigError("MAX_UNREAD_BYTES", "must be at least 8 × MAX_MESSAGE_BYTES"),
    };
  }
  if (HARD_FACTOR * e.MAX_UNREAD_BYTES < e.RATE_LIMIT_BURST * e.MAX_MESSAGE_BYTES) {
    return {
      ok: false,
      error: new ConfigError(
        "MAX_UNREAD_BYTES",
        `must be at least RATE_LIMIT_BURST × MAX_MESSAGE_BYTES ÷ ${HARD_FACTOR} (one sender's full burst)`,
      ),
    };
  }
  if (e.SIGNAL_MAX_BYTES > e.MAX_MESSAGE_BYTES) {
    return { ok: false, error: new ConfigError("SIGNAL_MAX_BYTES", "must be at most MAX_MESSAGE_BYTES") };
  }
  if (e.ROOM_MAX_QUEUED_BYTES < 2 * e.MAX_UNREAD_BYTES) {
    return {
      ok: false,
      error: new ConfigError("ROOM_MAX_QUEUED_BYTES", "must be at least 2 × MAX_UNREAD_BYTES"),
    };
  }
  // A room grows only if its objects can reach the threshold before they are full.
  if (e.SHARD_MAX > 1 && e.SHARD_GROW_AT > e.MAX_CONNECTIONS_PER_ROOM) {
    return { ok: false, error: new ConfigError("SHARD_GROW_AT", "must be at most MAX_CONNECTIONS_PER_ROOM") };
  }
  // A shared identity provider's key verifies tokens it issued for every app: without an audience,
  // any of them would open every room. A secret is this service's own, so it needs none.
  if (key.kind !== "secret" && e.JWT_AUDIENCE === undefined && e.ALLOW_ANY_AUDIENCE !== "true") {
    return {
      ok: false,
      error: new ConfigError(
        "JWT_AUDIENCE",
        `is required with ${key.kind === "jwks" ? "JWKS_URL" : "JWT_PUBLIC_KEY"} (or set ALLOW_ANY_AUDIENCE=true)`,
      ),
    };
  }
  const origins = e.ALLOWED_ORIGINS === undefined ? undefined : parseAllowedOrigins(e.ALLOWED_ORIGINS);
  if (origins === undefined && e.ALLOWED_ORIGINS !== undefined) {
    return {
      ok: false,
      error: new ConfigError(
        "ALLOWED_ORIGINS",
        "must list origins such as https://app.example.com or https://*.example.com",
      ),
    };
  }
  const webhooks = parseWebhookSettings(e);
  if (Array.isArray(webhooks)) return { ok: false, error: new ConfigError(webhooks[0], webhooks[1]) };
  return {
    ok: true,
    config: {
      key,
      issuer: e.JWT_ISSUER,
      audience: e.JWT_AUDIENCE,
      clockToleranceSeconds: e.JWT_CLOCK_TOLERANCE_SECONDS,
      allowedOrigins:
        origins !== undefined && (origins.exact.size > 0 || origins.wildcards.length > 0) ? origins : undefined,
      allowQueryToken: e.ALLOW_QUERY_TOKEN === "true",
      allowAnyAudience: e.ALLOW_ANY_AUDIENCE === "true",
      maxConnectionsPerRoom: e.MAX_CONNECTIONS_PER_ROOM,
      historyLimit: e.HISTORY_LIMIT,
      heartbeatIntervalMs: e.HEARTBEAT_INTERVAL_MS,
      heartbeatTimeoutMs,
      maxTextLength: e.MAX_TEXT_LENGTH,
      maxMessageBytes: e.MAX_MESSAGE_BYTES,
      maxUnreadBytes: e.MAX_UNREAD_BYTES,
      rateLimitPerSecond: e.RATE_LIMIT_PER_SECOND,
      rateLimitBurst: e.RATE_LIMIT_BURST,
      rateLimitStrikes: e.RATE_LIMIT_STRIKES,
      maxConnectionsPerUser: e.MAX_CONNECTIONS_PER_USER,
      connectsPerUserPerMinute: e.CONNECTS_PER_USER_PER_MINUTE,
      // The per-user bucket defaults to the per-connection one: the documented rate is a user's.
      userRateLimitPerSecond: e.USER_RATE_LIMIT_PER_SECOND ?? e.RATE_LIMIT_PER_SECOND,
      userRateLimitBurst: e.USER_RATE_LIMIT_BURST ?? e.RATE_LIMIT_BURST,
      roomMaxQueuedBytes: e.ROOM_MAX_QUEUED_BYTES,
      replayBytesPerUserPerMinute: e.REPLAY_BYTES_PER_USER_PER_MINUTE,
      presenceGraceMs: e.PRESENCE_GRACE_MS,
      presenceRosterMax: e.PRESENCE_ROSTER_MAX,
      signalMaxBytes: e.SIGNAL_MAX_BYTES,
      signalRatePerSecond: e.SIGNAL_RATE_PER_SECOND,
      signalRateBurst: e.SIGNAL_RATE_BURST,
      presenceStateMaxBytes: e.PRESENCE_STATE_MAX_BYTES,
      shardMax: e.SHARD_MAX,
      shardGrowAt: e.SHARD_GROW_AT,
      shardMovesPerSecond: e.SHARD_MOVES_PER_SECOND,
      shardShrinkAfterMs: e.SHARD_SHRINK_AFTER_MS,
      logLevel: e.LOG_LEVEL as "debug" | "info",
      usageStats: e.USAGE_STATS === "true",
      webhooks,
      testFaults: e.TEST_FAULTS === "true",
    },
  };
}

const cache = new WeakMap<object, ConfigResult>();

/** Parses `env` once per isolate (per env object); logs a misconfiguration once. */
export function loadConfig(env: object): ConfigResult {
  let result = cache.get(env);
  if (result === undefined) {
    result = parseConfig(env as Record<string, unknown>);
    cache.set(env, result);
    if (result.ok) setLogLevel(result.config.logLevel);
    else log("error", "config_invalid", { setting: result.error.setting, message: result.error.message });
  }
  return result;
}
