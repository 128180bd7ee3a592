/** Why a `send()` was rejected, and why a client stopped for good. */
import type { ErrorFrame, FrameErrorCode } from "../protocol/index.js";

/**
 * Codes of a rejected `send()` (and of `error` events): the server's error frame codes, plus the
 * client's own.
 * - `send_timeout`: no `ack` within `sendDeadlineMs` of the `send()` call. `wasWritten: false`: it
 *   never reached the server and never will; `true`: it may have been stored (then it is in the
 *   room's history under its `id`, and sending again with that `id` is acknowledged, not stored twice).
 * - `queue_full`: `maxQueue` sends were already waiting for a connection.
 * - `closed`: the client was closed (or gave up) before the send was acknowledged.
 * - `connection_lost`: a direct message was written but the connection dropped before its `ack`;
 *   direct messages are not stored, so the client cannot know whether it arrived.
 * - `message_too_big`: the server closed with 1009 right after this frame was written.
 * - `invalid_message`: also used before sending, for content that cannot be sent at all.
 * - `invalid_data`: only as an `error` event: a message's `data` failed the `dataSchema`.
 */
export type SendErrorCode =
  | FrameErrorCode
  | "send_timeout"
  | "invalid_data"
  | "queue_full"
  | "closed"
  | "connection_lost"
  | "message_too_big";

/**
 * The rejection of a `send()`, and the payload of `error` events. Match on `code`; `frame` is the
 * server's error frame when there was one; `id` is the message id of the send it is about.
 */
export class RoomClientError extends Error {
  override readonly name = "RoomClientError";
  readonly frame: ErrorFrame | undefined;
  /** The id of the message this error is about (every rejected `send()` has one). */
  readonly id: string | undefined;
  /**
   * For a rejected send: whether its frame was ever written to a socket. `false` means the server
   * never got it; `true` means it may have been stored (once, under `id`).
   */
  readonly wasWritten: boolean | undefined;

  constructor(
    readonly code: SendErrorCode,
    message: string,
    options: { frame?: ErrorFrame; id?: string; wasWritten?: boolean; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.frame = options.frame;
    this.id = options.id ?? options.frame?.id;
    this.wasWritten = options.wasWritten;
  }
}

/**
 * Why the client reached the `closed` state and stopped reconnecting.
 * - `closed_by_client`: `close()` was called.
 * - `forbidden`: the server closed with 4403 (kicked, or a token that no longer grants the room).
 * - `policy_violation`: the server closed with 1008.
 * - `token_expired`: closed with 4401 and the token is a fixed string, so a new one cannot be had.
 * - `handshake_refused`: the server refused the upgrade (HTTP 4xx) with a token just obtained.
 * - `retries_exhausted`: `reconnect.maxAttempts` attempts in a row failed.
 */
export type StopCode =
  | "closed_by_client"
  | "forbidden"
  | "policy_violation"
  | "token_expired"
  | "handshake_refused"
  | "retries_exhausted";

export interface Stop {
  code: StopCode;
  message: string;
  /** The WebSocket close code, when the server closed an open connection. */
  closeCode?: number;
  /** The HTTP status of a refused upgrade, when the WebSocket implementation exposes it (browsers do not). */
  status?: number;
  /** The server's JSON error of a refused upgrade, where the runtime lets the client read it (`ws`). */
  error?: { code: string; message: string };
}
