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
} from "../protocol";
export { CLOSE_CODES, PING_FRAME, SUBPROTOCOL } from "../protocol";
export { type BackoffOptions, backoffCeiling, backoffDelay, DEFAULT_BACKOFF, resolveBackoff } from "./backoff";
export type { Listener } from "./emitter";
export { RoomClientError, type SendErrorCode, type Stop, type StopCode } from "./errors";
export type { SendResult } from "./outbox";
export type { Refusal } from "./refusal";
export { RoomClient } from "./room-client";
export type { FetchLike, WebSocketConstructor, WebSocketExtraOptions, WebSocketLike } from "./socket";
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
} from "./types";
