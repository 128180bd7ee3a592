/**
 * The public types of `RoomClient`: its options, its events and what they carry. Kept apart from the
 * class so that the API reads in one place.
 */
import type * as v from "valibot";
import type { MessageFrame, PresenceFrame, User, WelcomeFrame } from "../protocol/index.js";
import type { BackoffOptions } from "./backoff.js";
import type { RoomClientError, Stop } from "./errors.js";
import type { FetchLike, WebSocketConstructor } from "./socket.js";

/** `connecting` (first attempt) → `open` (welcomed) → `reconnecting` (waiting or retrying) → … → `closed`. */
export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
  /** Why the client stopped, when `state` is `closed`. */
  stop?: Stop;
}

/** Why a reconnect was scheduled. */
export type RetryReason =
  /** An open connection closed (the close code says how). */
  | "dropped"
  /** Nothing answered at the server's address. */
  | "unreachable"
  /** The upgrade was refused with a status worth retrying (5xx, 408, 429). */
  | "unavailable"
  /** No `welcome` within `connectTimeoutMs`. */
  | "timeout"
  /** A ping got no pong within `pongTimeoutMs`, or no frame came for two heartbeat intervals. */
  | "heartbeat"
  /** A written send got no `ack` within `ackTimeoutMs`: the link is stalled (its sends are written again). */
  | "ack_timeout"
  /** Closed with 4401: the next attempt gets a fresh token, at once. */
  | "token_expired"
  /** The token function threw or returned no token. */
  | "token_error"
  /** Closed with 4307: the room moved the connection to another of its objects; resumed at once. */
  | "moved";

export interface Retry {
  /** Failed attempts in a row, this one included (1 for the first retry). */
  attempt: number;
  delayMs: number;
  reason: RetryReason;
  closeCode?: number;
  status?: number;
  message?: string;
}

/** Messages the client could not recover: `since` was trimmed from history, or the room was reset. */
export interface Gap {
  /** The last seq the client had seen. */
  since: number;
  /** The room's latest seq at the reconnect. */
  seq: number;
  reason: "trimmed" | "reset";
  /** The seqs the resume did not get (`welcome.missed`), when the server says: page back with `history`, or they are gone. */
  missed?: { from: number; to: number } | undefined;
}

/** A message frame whose `data` is typed (and, with `dataSchema`, checked). */
export type RoomMessage<TData = unknown> = Omit<MessageFrame, "data"> & { data?: TData };

/** Every event, and what its listeners receive. */
export interface RoomClientEvents<TData = unknown> {
  state: StateChange;
  /** Each connection's first frame (also after every reconnect). */
  welcome: WelcomeFrame;
  /** Room messages in `seq` order, each once; direct messages (no `seq`) as they come. */
  message: RoomMessage<TData>;
  presence: PresenceFrame;
  /**
   * Errors no `send()` rejection answers: server error frames without a pending send (`frame` set,
   * for example `rate_limited`), and messages whose `data` failed `dataSchema` (`invalid_data`).
   */
  error: RoomClientError;
  gap: Gap;
  retry: Retry;
  /** Binary frames relayed from other connections (see `binaryMessage` for who sent them). */
  binary: ArrayBuffer;
  /** The same binary frames with their sender (`undefined` from a server that does not name it). */
  binaryMessage: BinaryMessage;
  /** Ephemeral signals from other connections (see `RoomClient.signal`). */
  signal: Signal;
}

/** A relayed signal: who sent it, its data, and `to` when it was sent to this user only. */
export interface Signal {
  from: User;
  data: unknown;
  to?: string;
}

/** A user in the room, with its presence state once it set one (`setPresence`). */
export interface PresenceUser extends User {
  state?: Record<string, unknown>;
}

export interface SignalOptions {
  /** A user id: only that user's connections get the signal. */
  to?: string;
}

/** A relayed binary frame and who sent it. */
export interface BinaryMessage {
  data: ArrayBuffer;
  from: User | undefined;
}

/** A token, or a function called before every (re)connect to get a fresh one. */
export type TokenSource = string | (() => string | Promise<string>);

export interface RoomClientOptions<TData = unknown> {
  /** The service's base URL, `https://…` or `wss://…` (`/ws/chat/<room>` is appended). */
  url: string;
  room: string;
  token: TokenSource;
  /** Resume from this seq on the first connect (`0`: the whole stored history). Default: only new messages. */
  since?: number;
  reconnect?: Partial<BackoffOptions>;
  /**
   * How long a written send waits for its `ack` before the connection counts as stalled: it is
   * dropped and the send written again (same id) on the next one. Default 10 000 ms.
   */
  ackTimeoutMs?: number;
  /**
   * How long a send may take, from `send()` to its `ack`, before it is rejected with `send_timeout`
   * (queued or in flight, across reconnects). Default 60 000 ms.
   */
  sendDeadlineMs?: number;
  /** How often to ping an open connection. Default: half the server's `heartbeatInterval`. */
  pingIntervalMs?: number;
  /** A ping unanswered (no pong, no frame at all) this long means the link is dead. Default 5 000 ms. */
  pongTimeoutMs?: number;
  /**
   * A valibot schema for messages' `data`: incoming `data` that fails it is not emitted as a
   * `message` but as an `error` event with code `invalid_data`; `TData` is inferred from it.
   */
  dataSchema?: v.GenericSchema<unknown, TData>;
  /** Sends kept while disconnected; more are rejected with `queue_full`. Default 100. */
  maxQueue?: number;
  /**
   * The pace of sends, to match the server's RATE_LIMIT_PER_SECOND / RATE_LIMIT_BURST (default 20
   * and 40, the server's defaults): a full queue flushed after a reconnect then is not refused.
   */
  rateLimit?: { perSecond?: number; burst?: number };
  /** How long an attempt may take to get its `welcome`. Default 10 000 ms. */
  connectTimeoutMs?: number;
  /** A WebSocket constructor (for example `ws` in Node 20). Default: the global `WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Used to tell a refused upgrade from an unreachable server. Default: the global `fetch`. */
  fetch?: FetchLike;
  /**
   * Connect right away (on the next microtask, so listeners added now see every event). Default
   * true; with false the client starts `closed` and `connect()` starts it.
   */
  autoConnect?: boolean;
}

export interface SendOptions {
  /** A user id: a direct message, not stored and without `seq`. */
  to?: string;
  /** The message id (≤ 64 characters). Default: a unique one. Reusing an id makes a retry idempotent. */
  id?: string;
}
