/**
 * `RoomClientOptions` checked and completed with their defaults, once, in the constructor: a bad
 * option throws a `TypeError` there rather than failing later on a timer.
 */
import * as v from "valibot";
import { RoomIdSchema } from "../protocol/index.js";
import { type BackoffOptions, resolveBackoff } from "./backoff.js";
import type { OutboxOptions } from "./outbox.js";
import { connectUrl, resolveWebSocket, type WebSocketConstructor } from "./socket.js";
import type { RoomClientOptions } from "./types.js";

const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const MIN_PING_INTERVAL_MS = 250;
const DEFAULT_PONG_TIMEOUT_MS = 5_000;

export interface ResolvedOptions {
  /** The room id, checked. */
  room: string;
  backoff: BackoffOptions;
  WebSocket: WebSocketConstructor;
  connectTimeoutMs: number;
  /** The outbox's limits (without its `onStall`, which is the client's). */
  outbox: Omit<OutboxOptions, "onStall">;
}

/** Checks the options (throws a `TypeError` naming the bad one) and fills in the defaults. */
export function resolveOptions<TData>(options: RoomClientOptions<TData>): ResolvedOptions {
  const room = v.safeParse(RoomIdSchema, options.room);
  if (!room.success) throw new TypeError(`room: ${room.issues[0].message}`);
  if (typeof options.token !== "string" && typeof options.token !== "function") {
    throw new TypeError("token must be a string or a function returning one");
  }
  if (options.since !== undefined && !(Number.isSafeInteger(options.since) && options.since >= 0)) {
    throw new TypeError("since must be a whole number ≥ 0");
  }
  connectUrl(options.url, room.output, undefined); // throws a TypeError on a bad url
  const backoff = resolveBackoff(options.reconnect);
  const WebSocket = resolveWebSocket(options.WebSocket);
  if (options.pingIntervalMs !== undefined) positive(options.pingIntervalMs, "pingIntervalMs");
  positive(options.pongTimeoutMs ?? 1, "pongTimeoutMs");
  return {
    room: room.output,
    backoff,
    WebSocket,
    connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    outbox: {
      maxQueue: positive(options.maxQueue ?? 100, "maxQueue", true),
      ackTimeoutMs: positive(options.ackTimeoutMs ?? 10_000, "ackTimeoutMs"),
      sendDeadlineMs: positive(options.sendDeadlineMs ?? 60_000, "sendDeadlineMs"),
      pace: {
        perSecond: positive(options.rateLimit?.perSecond ?? 20, "rateLimit.perSecond"),
        burst: positive(options.rateLimit?.burst ?? 40, "rateLimit.burst", true),
      },
    },
  };
}

/**
 * The liveness timing for a server heartbeat of `intervalMs`: ping every `pingIntervalMs` (default
 * half the server's interval), and count the link silent after two intervals without a frame.
 */
export function livenessTiming<TData>(
  options: RoomClientOptions<TData>,
  intervalMs: number,
): { pingEveryMs: number; pongTimeoutMs: number; silentAfterMs: number } {
  return {
    pingEveryMs: options.pingIntervalMs ?? Math.max(MIN_PING_INTERVAL_MS, intervalMs / 2),
    pongTimeoutMs: options.pongTimeoutMs ?? DEFAULT_PONG_TIMEOUT_MS,
    silentAfterMs: 2 * Math.max(intervalMs, MIN_PING_INTERVAL_MS),
  };
}

function positive(value: number, name: string, isCount = false): number {
  if (!(value > 0) || (isCount && !Number.isInteger(value))) throw new TypeError(`${name} must be a positive number`);
  return value;
}
