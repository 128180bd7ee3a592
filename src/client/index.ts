/**
 * `edge-rooms/client`: the browser and Node client of edge-rooms. Frame types come from the same
 * valibot schemas the server uses (`src/protocol/index.ts`).
 */
export type {
  AckFrame,
  BinaryFrame,
  ErrorFrame,
  FrameErrorCode,
  MessageFrame,
  PresenceEntry,
  PresenceFrame,
  PresenceState,
  ServerFrame,
  SignalFrame,
  User,
  WelcomeFrame,
} from "../protocol/index.js";
export { CLOSE_CODES, PING_FRAME, SUBPROTOCOL } from "../protocol/index.js";
export { type BackoffOptions, backoffCeiling, backoffDelay, DEFAULT_BACKOFF, resolveBackoff } from "./backoff.js";
export type { Listener } from "./emitter.js";
export { RoomClientError, type SendErrorCode, type Stop, type StopCode } from "./errors.js";
export type { SendResult } from "./outbox.js";
export type { Refusal } from "./refusal.js";
export { RoomClient } from "./room-client.js";
export type { FetchLike, WebSocketConstructor, WebSocketExtraOptions, WebSocketLike } from "./socket.js";
export type {
  BinaryMessage,
  ConnectionState,
  Gap,
  PresenceUser,
  Retry,
  RetryReason,
  RoomClientEvents,
  RoomClientOptions,
  RoomMessage,
  SendOptions,
  Signal,
  SignalOptions,
  StateChange,
  TokenSource,
} from "./types.js";
