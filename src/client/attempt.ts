/**
 * One connection attempt: its socket, opened with the token offered as a subprotocol, and what the
 * socket told about how it went (opened, refused with a status and an error, or neither).
 */
import { BEARER_PROTOCOL_PREFIX, SUBPROTOCOL } from "../protocol/index.js";
import { type Refusal, readRefusal } from "./refusal.js";
import {
  openSocket,
  refusedStatus,
  type SocketCloseEvent,
  type SocketErrorEvent,
  type SocketMessageEvent,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./socket.js";

/** For `ws`: give up on the server's TCP close after this long, as browsers do. */
const SOCKET_CLOSE_TIMEOUT_MS = 2_000;

export interface Attempt {
  socket: WebSocketLike;
  url: string;
  since: number | undefined;
  /** The token came from the token function just before this attempt. */
  isTokenFresh: boolean;
  isOpen: boolean;
  status: number | undefined;
  /** The server's JSON error of a refused upgrade, when the implementation lets us read it (`ws`). */
  refusal: Refusal | undefined;
  /** The implementation reports refused upgrades (`ws`): a close before `open` without one is a network failure. */
  canSeeRefusals: boolean;
}

export interface AttemptSpec {
  url: string;
  token: string;
  since: number | undefined;
  isTokenFresh: boolean;
  onClose: (code: number, reason: string) => void;
  onData: (data: unknown) => void;
}

/** Opens the socket and listens to it. Throws what the WebSocket constructor throws. */
export function openAttempt(WebSocket: WebSocketConstructor, spec: AttemptSpec): Attempt {
  const socket = openSocket(WebSocket, spec.url, [SUBPROTOCOL, `${BEARER_PROTOCOL_PREFIX}${spec.token}`], {
    closeTimeout: SOCKET_CLOSE_TIMEOUT_MS,
  });
  const attempt: Attempt = {
    socket,
    url: spec.url,
    since: spec.since,
    isTokenFresh: spec.isTokenFresh,
    isOpen: false,
    status: undefined,
    refusal: undefined,
    canSeeRefusals: false,
  };
  attempt.canSeeRefusals = readRefusal(socket, (status, refusal) => {
    attempt.status = status;
    attempt.refusal = refusal;
  });
  socket.binaryType = "arraybuffer";
  socket.onopen = () => {
    attempt.isOpen = true;
  };
  socket.onerror = (event: SocketErrorEvent) => {
    attempt.status ??= refusedStatus(event);
  };
  socket.onclose = (event: SocketCloseEvent) => spec.onClose(event.code, event.reason);
  socket.onmessage = (event: SocketMessageEvent) => spec.onData(event.data);
  return attempt;
}

/** Stops listening to the attempt's socket. The socket itself is left as it is. */
export function detachAttempt({ socket }: Attempt): void {
  socket.onopen = null;
  socket.onmessage = null;
  socket.onclose = null;
  // Not null: `ws` throws an 'error' event that nobody listens to.
  socket.onerror = () => {};
}
