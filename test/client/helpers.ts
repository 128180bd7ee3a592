/**
 * Helpers of the client tests: tokens signed with the test server's secret, a `ws` WebSocket that the
 * tests can watch and break on purpose, and waits whose failures say what was awaited.
 */
import { SignJWT } from "jose";
import { inject } from "vitest";
import WebSocket from "ws";
import {
  type ConnectionState,
  RoomClient,
  type RoomClientEvents,
  type RoomClientOptions,
  type StateChange,
  type WebSocketExtraOptions,
} from "../../src/client/index";

export const BASE_URL = inject("clientBaseUrl");
export const SECRET = inject("clientJwtSecret");
/** Waits for one expected event; the local server answers in milliseconds. */
export const EVENT_TIMEOUT_MS = 10_000;

let roomCounter = 0;
/** A room id no other test (or earlier run) uses. */
export function uniqueRoom(what: string): string {
  roomCounter += 1;
  return `c-${what}-${Date.now().toString(36)}-${process.pid}-${roomCounter}`.slice(0, 64);
}

export interface TokenOptions {
  name?: string;
  /** Expiry in seconds since the epoch. Default: in one hour. */
  expiresAt?: number;
  role?: "member" | "readonly" | "admin";
  rooms?: string[];
  secret?: string;
}

export function mintToken(sub: string, options: TokenOptions = {}): Promise<string> {
  const { name = sub, expiresAt = Math.floor(Date.now() / 1000) + 3600, role, rooms, secret = SECRET } = options;
  return new SignJWT({ name, ...(role && { role }), ...(rooms && { rooms }) })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime(expiresAt)
    .sign(new TextEncoder().encode(secret));
}

/** A `ws` WebSocket that records itself, and that a test can break in the ways real networks do. */
export class TestSocket extends WebSocket {
  readonly requestedUrl: string;
  readonly offered: string[];
  /** When true, the `ws` error event of a refused upgrade says no status, as in a browser. */
  hidesStatus = false;

  constructor(
    url: string,
    protocols: string | string[] | undefined,
    options: WebSocketExtraOptions | undefined,
    readonly lab: SocketLab,
  ) {
    const target = lab.rewriteUrl ? lab.rewriteUrl(url) : url;
    // ws 8.23 reads closeTimeout; @types/ws 8.18 does not list it yet.
    super(target, protocols, options as WebSocket.ClientOptions | undefined);
    this.requestedUrl = target;
    this.offered = typeof protocols === "string" ? [protocols] : (protocols ?? []);
    this.hidesStatus = lab.hidesStatus;
    lab.sockets.push(this);
  }

  // As in a browser: the refused upgrade's response cannot be read (the client's listener is ignored).
  override on(event: string | symbol, listener: (...args: never[]) => void): this {
    if (event === "unexpected-response" && this.hidesStatus) return this;
    return super.on(event, listener as (...args: unknown[]) => void);
  }

  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === "error" && this.hidesStatus) return super.emit(event, new Error("WebSocket connection failed"));
    return super.emit(event, ...args);
  }

  /** The next `count` outgoing message frames vanish (frames lost on a half-open connection). */
  dropMessageFrames(count = Number.POSITIVE_INFINITY): void {
    const send = this.send.bind(this);
    let left = count;
    (this as { send: (data: string) => void }).send = (data: string) => {
      if (left > 0 && data.startsWith('{"type":"message"')) left -= 1;
      else send(data);
    };
  }

  /** The server goes silent: nothing more is read from this socket (no frames, no pongs). */
  mute(): void {
    this.pause();
  }
}

/** Makes `TestSocket` constructors for a client, and keeps every socket they made. */
export class SocketLab {
  readonly sockets: TestSocket[] = [];
  rewriteUrl: ((url: string) => string) | undefined;
  hidesStatus = false;
  readonly WebSocket: new (
    url: string,
    protocols?: string | string[],
    options?: WebSocketExtraOptions,
  ) => TestSocket;

  constructor() {
    const lab = this;
    this.WebSocket = class extends TestSocket {
      constructor(url: string, protocols?: string | string[], options?: WebSocketExtraOptions) {
        super(url, protocols, options, lab);
      }
    };
  }

  get last(): TestSocket {
    const socket = this.sockets.at(-1);
    if (!socket) throw new Error("no socket was opened yet");
    return socket;
  }
}

const clients = new Set<RoomClient>();

/** A client on the test server with a `SocketLab`; closed after each test by `closeClients`. */
export function makeClient(
  options: Partial<RoomClientOptions> & Pick<RoomClientOptions, "room" | "token">,
  lab = new SocketLab(),
): { client: RoomClient; lab: SocketLab; log: EventLog } {
  const client = new RoomClient({ url: BASE_URL, WebSocket: lab.WebSocket, ...options });
  clients.add(client);
  return { client, lab, log: new EventLog(client) };
}

export function closeClients(): void {
  for (const client of clients) client.close();
  clients.clear();
}

type EventName = keyof RoomClientEvents;
interface Logged<K extends EventName = EventName> {
  type: K;
  payload: RoomClientEvents[K];
  at: number;
}

/** Every event of a client, in order, with a way to wait for the next one that matches. */
export class EventLog {
  readonly events: Logged[] = [];
  readonly #waiters = new Set<() => void>();

  constructor(readonly client: RoomClient) {
    const types: EventName[] = [
      "state",
      "welcome",
      "message",
      "presence",
      "error",
      "gap",
      "retry",
      "binary",
      "binaryMessage",
      "signal",
    ];
    for (const type of types) {
      client.on(type, (payload) => {
        this.events.push({ type, payload, at: Date.now() });
        for (const wake of [...this.#waiters]) wake();
      });
    }
  }

  all<K extends EventName>(type: K): RoomClientEvents[K][] {
    return this.events.filter((e) => e.type === type).map((e) => e.payload as RoomClientEvents[K]);
  }

  timed<K extends EventName>(type: K): Array<{ payload: RoomClientEvents[K]; at: number }> {
    return this.events
      .filter((e) => e.type === type)
      .map((e) => ({ payload: e.payload as RoomClientEvents[K], at: e.at }));
  }

  /** States the client went through, in order. */
  get states(): ConnectionState[] {
    return this.all("state").map((s: StateChange) => s.state);
  }

  /** The first event of `type` matching `predicate` at or after position `from` of the log. */
  wait<K extends EventName>(
    type: K,
    predicate: (payload: RoomClientEvents[K]) => boolean,
    what: string,
    { from = 0, timeoutMs = EVENT_TIMEOUT_MS } = {},
  ): Promise<RoomClientEvents[K]> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.events
          .slice(from)
          .find((e) => e.type === type && predicate(e.payload as RoomClientEvents[K]));
        if (!found) return;
        done();
        resolve(found.payload as RoomClientEvents[K]);
      };
      const timer = setTimeout(() => {
        done();
        const seen = this.events.map((e) => `${e.type} ${JSON.stringify(e.payload).slice(0, 140)}`).join("\n  ");
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; events:\n  ${seen || "(none)"}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** Waits until the client is `state` (now or later). */
  state(state: ConnectionState, what = `state ${state}`, timeoutMs = EVENT_TIMEOUT_MS): Promise<unknown> {
    if (this.client.state === state) return Promise.resolve();
    return this.wait("state", (s) => s.state === state, what, { from: this.events.length, timeoutMs });
  }
}

/** Polls `condition` until it holds. */
export async function until(condition: () => boolean, what: string, timeoutMs = EVENT_TIMEOUT_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
