/**
 * What the client needs from a WebSocket implementation: the browser's, Node's global one (22+), or
 * an injected constructor such as the `ws` package's. Also: telling a refused upgrade from a server
 * that cannot be reached, which browsers hide (both are a close with 1006 before `open`).
 */

/** The events the client reads, reduced to the fields it uses. */
export interface SocketMessageEvent {
  data: unknown;
}
export interface SocketCloseEvent {
  code: number;
  reason: string;
}
export interface SocketErrorEvent {
  /** Set by `ws` (for example "Unexpected server response: 401"); browsers give no details. */
  message?: unknown;
  error?: unknown;
}

/**
 * The subset of the WHATWG WebSocket the client uses. Handler parameters are typed `never` so that
 * every implementation's own event types fit; the client reads them through the interfaces above.
 */
export interface WebSocketLike {
  readonly readyState: number;
  binaryType: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: never) => void) | null;
  onmessage: ((event: never) => void) | null;
  onclose: ((event: never) => void) | null;
  onerror: ((event: never) => void) | null;
}

/**
 * Options passed as a third constructor argument. Browsers and Node's global WebSocket ignore it;
 * `ws` reads `closeTimeout`: how long to wait for the server to close the TCP connection after the
 * closing handshake before the `close` event (browsers wait about 2 s; `ws` would wait 30 s).
 */
export interface WebSocketExtraOptions {
  closeTimeout?: number;
}

/**
 * A WebSocket constructor: the browser's, Node's global one (22+), or the `ws` package's
 * (`import WS from "ws"`). Only the first two parameters are part of the type, so that both the DOM's
 * and `ws`'s constructors fit under strict TypeScript (`ws`'s options type shares no field with
 * {@link WebSocketExtraOptions}, so a third typed parameter would refuse it); the client still passes
 * those options as a third argument, which `ws` reads and the others ignore.
 */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Opens a socket, passing the extra options that `ws` reads (see {@link WebSocketConstructor}). */
export function openSocket(
  WebSocketImpl: WebSocketConstructor,
  url: string,
  protocols: string[],
  options: WebSocketExtraOptions,
): WebSocketLike {
  const withOptions = WebSocketImpl as new (
    url: string,
    protocols: string[],
    options: WebSocketExtraOptions,
  ) => WebSocketLike;
  return new withOptions(url, protocols, options);
}

export const OPEN = 1;
export const CLOSING = 2;

/** The implementation to use: the injected one, else the global `WebSocket`. */
export function resolveWebSocket(injected: WebSocketConstructor | undefined): WebSocketConstructor {
  if (injected) return injected;
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (!global) {
    throw new TypeError("no global WebSocket here (Node < 22): pass one, e.g. new RoomClient({ WebSocket: ws, … })");
  }
  return global;
}

/** The HTTP status of a refused upgrade, where the implementation says it (`ws` does, in its error). */
export function refusedStatus(event: SocketErrorEvent): number | undefined {
  const texts = [event.message, (event.error as { message?: unknown } | undefined)?.message];
  for (const text of texts) {
    if (typeof text !== "string") continue;
    const match = /Unexpected server response: (\d{3})/.exec(text);
    if (match) return Number(match[1]);
  }
  return undefined;
}

/** Whether a refused upgrade with this status is worth retrying (the server may recover). */
export function isTransientStatus(status: number): boolean {
  return status >= 500 || status === 408 || status === 429;
}

export type FetchLike = (input: string, init?: RequestInit) => Promise<unknown>;

/**
 * Whether anything answers HTTP at `url` (any status counts). `no-cors` makes the answer opaque,
 * which is enough here and needs no CORS headers from the server.
 */
export async function isReachable(url: string, fetchImpl: FetchLike, signal: AbortSignal): Promise<boolean> {
  try {
    await fetchImpl(url, { method: "GET", mode: "no-cors", cache: "no-store", credentials: "omit", signal });
    return true;
  } catch {
    return false;
  }
}

/** `http(s)://` or `ws(s)://` base URL plus the room's socket path, asking for batch frames (`batch=1`). */
export function connectUrl(base: string, room: string, since: number | undefined): string {
  const url = new URL(base);
  if (url.protocol === "http:") url.protocol = "ws:";
  else if (url.protocol === "https:") url.protocol = "wss:";
  else if (url.protocol !== "ws:" && url.protocol !== "wss:") {
    throw new TypeError(`url must be http(s) or ws(s), not ${url.protocol}`);
  }
  url.pathname = `${url.pathname.replace(/\/+$/, "")}/ws/chat/${encodeURIComponent(room)}`;
  url.search = `?batch=1${since === undefined ? "" : `&since=${since}`}`;
  url.hash = "";
  return url.toString();
}

/** The same endpoint over HTTP, for the reachability probe. */
export function probeUrl(socketUrl: string): string {
  const url = new URL(socketUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  url.search = "";
  return url.toString();
}
