/** Test helpers: tokens, sockets and frame queues, each wait with a message saying what was awaited. */
import { env, runDurableObjectAlarm, runInDurableObject, SELF } from "cloudflare:test";
import { SignJWT } from "jose";
import { vi } from "vitest";
import type { ServerFrame } from "../src/protocol";
import { HEARTBEAT_DUE_KEY } from "../src/room/alarm-plan";
import { until as untilHolds } from "./support/until";

export const TEST_JWT_SECRET = "edge-rooms-test-secret-0123456789-abcdefghij";
export const secretKey = new TextEncoder().encode(TEST_JWT_SECRET);

let counter = 0;
/** A room id no other test uses. */
export function uniqueRoom(prefix = "room"): string {
  counter += 1;
  return `${prefix}-${counter}-${crypto.randomUUID().slice(0, 8)}`;
}

export interface TokenOptions {
  sub?: string;
  name?: string;
  role?: string;
  rooms?: string[];
  /** Seconds from now; negative for an expired token. */
  ttl?: number;
  exp?: number;
  extra?: Record<string, unknown>;
  alg?: "HS256" | "HS384" | "HS512";
  key?: Uint8Array;
}

/** A token signed with the test secret (HS256, one hour) unless told otherwise. */
export async function mintToken(options: TokenOptions = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = { ...options.extra };
  if (options.name !== undefined) claims.name = options.name;
  if (options.role !== undefined) claims.role = options.role;
  if (options.rooms !== undefined) claims.rooms = options.rooms;
  return new SignJWT(claims)
    .setProtectedHeader({ alg: options.alg ?? "HS256" })
    .setSubject(options.sub ?? "alice")
    .setIssuedAt(now)
    .setExpirationTime(options.exp ?? now + (options.ttl ?? 3600))
    .sign(options.key ?? secretKey);
}

export interface ConnectOptions {
  token?: string;
  /** How to send the token. */
  via?: "header" | "protocol" | "query";
  since?: number;
  /** Asks for batch frames (`?batch=1`). */
  batch?: boolean;
  headers?: Record<string, string>;
  query?: string;
}

/**
 * The headers of a real WebSocket handshake (RFC 6455 §4.1): a random 16-byte key and version 13.
 * The gate refuses an upgrade without them, so every test upgrade sends them.
 */
export function handshake(): Record<string, string> {
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  return { Upgrade: "websocket", "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13" };
}

/** Sends an upgrade request to the Worker (through its real fetch handler). */
export function upgrade(room: string, options: ConnectOptions = {}): Promise<Response> {
  const headers = new Headers({ ...handshake(), ...options.headers });
  const params = new URLSearchParams(options.query ?? "");
  if (options.since !== undefined) params.set("since", String(options.since));
  if (options.batch) params.set("batch", "1");
  if (options.token !== undefined) {
    const via = options.via ?? "header";
    if (via === "header") headers.set("Authorization", `Bearer ${options.token}`);
    if (via === "protocol") headers.set("Sec-WebSocket-Protocol", `rooms.v1, bearer.${options.token}`);
    if (via === "query") params.set("token", options.token);
  }
  const qs = params.toString();
  return SELF.fetch(`https://rooms.test/ws/chat/${room}${qs ? `?${qs}` : ""}`, { headers });
}

export interface Closed {
  code: number;
  reason: string;
}

/** A binary frame as the test sees it (`binary` is the text frame that names its sender). */
export interface BytesFrame {
  type: "bytes";
  bytes: Uint8Array;
}
export type Received = ServerFrame | BytesFrame;

/** A client socket with a queue of what it received. */
export class Client {
  readonly frames: Received[] = [];
  /** Every text frame as it came over the socket (a batch frame is one). */
  readonly texts: string[] = [];
  closed: Closed | undefined;
  /** Echo every `heartbeat` frame at once, byte for byte, as a well-behaved client does. */
  echoesHeartbeats = false;
  #waiters: Array<() => void> = [];
  #cursor = 0;

  constructor(
    readonly ws: WebSocket,
    readonly response: Response,
  ) {
    // Newer compatibility dates deliver binary as Blob by default.
    (ws as WebSocket & { binaryType: string }).binaryType = "arraybuffer";
    ws.addEventListener("message", (event) => {
      const data = event.data;
      if (typeof data === "string") this.texts.push(data);
      const parsed: Received | Received[] =
        typeof data === "string"
          ? (JSON.parse(data) as ServerFrame | ServerFrame[])
          : { type: "bytes", bytes: new Uint8Array(data as ArrayBuffer) };
      // A batch frame (`?batch=1`) is read as the frames it holds, in order.
      for (const frame of Array.isArray(parsed) ? parsed : [parsed]) {
        this.frames.push(frame);
        if (frame.type === "heartbeat" && this.echoesHeartbeats) this.ws.send(data as string);
      }
      this.#wake();
    });
    ws.addEventListener("close", (event) => {
      this.closed = { code: event.code, reason: event.reason };
      this.#wake();
    });
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  async #until<T>(check: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
    // performance.now(), not Date.now(): tests may fake the Date clock.
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const value = check();
      if (value !== undefined) return value;
      const remaining = deadline - performance.now();
      if (remaining <= 0) {
        const seen = JSON.stringify(this.frames.slice(-5)).slice(0, 600);
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last frames: ${seen}`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /**
   * The next frame of `type` not yet taken, skipping frames of other types (heartbeats always, unless
   * asked for). Use `pending()` to assert that nothing else arrived.
   */
  next<T extends Received["type"]>(type: T, timeoutMs = 3000): Promise<Extract<Received, { type: T }>> {
    return this.#until(
      () => {
        while (this.#cursor < this.frames.length) {
          const frame = this.frames[this.#cursor++];
          if (frame?.type === type) return frame as Extract<Received, { type: T }>;
        }
        return undefined;
      },
      `a ${type} frame`,
      timeoutMs,
    );
  }

  /** Waits until `check` holds for what was received so far. */
  async waitFor(check: (frames: Received[]) => boolean, what: string, timeoutMs = 3000): Promise<void> {
    await this.#until(() => (check(this.frames) ? true : undefined), what, timeoutMs);
  }

  /** Frames received after the last one `next` took (heartbeats excluded). */
  pending(): Received[] {
    return this.frames.slice(this.#cursor).filter((f) => f.type !== "heartbeat");
  }

  /** All frames of `type` received so far. */
  all<T extends Received["type"]>(type: T): Array<Extract<Received, { type: T }>> {
    return this.frames.filter((f): f is Extract<Received, { type: T }> => f.type === type);
  }

  /** Waits for the server's close frame. */
  nextClose(timeoutMs = 3000): Promise<Closed> {
    return this.#until(() => this.closed, "the socket to close", timeoutMs);
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  sendRaw(data: string | ArrayBuffer | Uint8Array): void {
    this.ws.send(data);
  }

  close(code = 1000, reason = "bye"): void {
    try {
      this.ws.close(code, reason);
    } catch {
      // already closed
    }
  }
}

/** Connects and fails the test unless the upgrade succeeds. */
export async function connect(room: string, options: ConnectOptions & TokenOptions = {}): Promise<Client> {
  const token = options.token ?? (await mintToken(options));
  const response = await upgrade(room, { ...options, token });
  const ws = response.webSocket;
  if (response.status !== 101 || ws === null) {
    throw new Error(`expected 101, got ${response.status}: ${await response.text()}`);
  }
  ws.accept();
  return new Client(ws, response);
}

/** Connects and takes the welcome frame. */
export async function join(room: string, options: ConnectOptions & TokenOptions = {}) {
  const client = await connect(room, options);
  const welcome = await client.next("welcome");
  return { client, welcome };
}

/** Reads an HTTP error response: status, code and headers. */
export async function errorOf(response: Response) {
  const body = (await response.json()) as { error: { code: string; message: string; issues?: string[] } };
  return { status: response.status, ...body.error, headers: response.headers };
}

/** The room object's stub. */
export function roomStub(room: string) {
  return env.ROOMS.get(env.ROOMS.idFromName(room));
}

/** Runs the room's alarm as if the clock read `Date.now() + advanceMs` (the object shares the test's clock). */
export function runAlarmAfter(room: string, advanceMs: number): Promise<boolean> {
  return withClockAt(Date.now() + advanceMs, () => runDurableObjectAlarm(roomStub(room)));
}

/**
 * Runs `fn` with the Date clock (which the rooms share) held still: rate buckets and allowances, which
 * refill from it, do not refill however slowly a loaded machine works through what `fn` sends.
 */
export function withClockStill<T>(fn: () => Promise<T>): Promise<T> {
  return withClockAt(Date.now(), fn);
}

/** Runs `fn` with the shared Date clock set to `ms` and held there. */
async function withClockAt<T>(ms: number, fn: () => Promise<T>): Promise<T> {
  vi.useFakeTimers({ toFake: ["Date"] });
  try {
    vi.setSystemTime(ms);
    return await fn();
  } finally {
    vi.useRealTimers();
  }
}

/**
 * Runs the room's alarm as a heartbeat round: marks the round due (as when its time has come), then
 * runs it, `advanceMs` on (see `runAlarmAfter`). A plain alarm run is a round only when one is due.
 */
export async function runHeartbeatRound(room: string, advanceMs = 0): Promise<boolean> {
  await runInDurableObject(roomStub(room), (_i, state) => state.storage.delete(HEARTBEAT_DUE_KEY));
  return advanceMs === 0 ? runDurableObjectAlarm(roomStub(room)) : runAlarmAfter(room, advanceMs);
}

/** Waits until `check` holds (it may ask an object over RPC); fails saying what was awaited. */
export function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  return untilHolds(check, what, timeoutMs);
}

/** Lets queued frames and close events arrive. */
export function settle(ms = 50): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function base64url(data: string | Uint8Array): string {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Signs any header and payload with HS256 and the test secret, bypassing jose's own checks. */
export async function signRaw(header: Record<string, unknown>, payload: Record<string, unknown>): Promise<string> {
  const input = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(payload))}`;
  const key = await crypto.subtle.importKey("raw", secretKey, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const signature = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(input)));
  return `${input}.${base64url(signature)}`;
}

/** Each connection's awaited heartbeat (`since`, `at`), as its attachment holds it, by user id. */
export async function awaitingOf(room: string): Promise<Record<string, { since: number; at: number } | undefined>> {
  return runInDurableObject(roomStub(room), (_i, state) =>
    Object.fromEntries(
      state.getWebSockets().map((ws) => {
        const a = ws.deserializeAttachment() as { user: { id: string }; awaiting?: { since: number; at: number } };
        return [a.user.id, a.awaiting];
      }),
    ),
  );
}
