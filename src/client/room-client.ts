/**
 * `RoomClient`: one room over one WebSocket, kept connected. It authenticates with the subprotocol
 * offer, reconnects with backoff, resumes with `?since=` without loss or duplicates, acknowledges
 * sends, and keeps the connection alive with pings. See `src/client/README.md`.
 */
import * as v from "valibot";
import {
  BEARER_PROTOCOL_PREFIX,
  CLOSE_CODES,
  clientFrameSchema,
  type MessageFrame,
  PING_FRAME,
  type PresenceFrame,
  type PresenceState,
  PresenceStateSchema,
  RoomIdSchema,
  ServerFrameSchema,
  SUBPROTOCOL,
  type User,
  type WelcomeFrame,
} from "../protocol/index.js";
import { type BackoffOptions, backoffDelay, resolveBackoff } from "./backoff.js";
import { Emitter, type Listener } from "./emitter.js";
import { RoomClientError, type Stop } from "./errors.js";
import { Liveness } from "./liveness.js";
import { Outbox, type SendResult } from "./outbox.js";
import { readRefusal } from "./refusal.js";
import {
  CLOSING,
  connectUrl,
  type FetchLike,
  isReachable,
  isTransientStatus,
  OPEN,
  openSocket,
  probeUrl,
  refusedStatus,
  resolveWebSocket,
  type SocketCloseEvent,
  type SocketErrorEvent,
  type SocketMessageEvent,
  type WebSocketConstructor,
  type WebSocketLike,
} from "./socket.js";
import type {
  ConnectionState,
  Gap,
  PresenceUser,
  Retry,
  RoomClientEvents,
  RoomClientOptions,
  RoomMessage,
  SendOptions,
  SignalOptions,
} from "./types.js";

/** The close code the client uses when it abandons a connection it considers dead. */
const ABANDON_CODE = 4000;
const PROBE_TIMEOUT_MS = 5_000;
const MIN_PING_INTERVAL_MS = 250;
const DEFAULT_PONG_TIMEOUT_MS = 5_000;
/** For `ws`: give up on the server's TCP close after this long, as browsers do. */
const SOCKET_CLOSE_TIMEOUT_MS = 2_000;
/**
 * A socket whose closing handshake has begun gets this long for its `close` event (which carries
 * the code that decides between stopping and reconnecting) before it is counted as dead.
 */
const CLOSING_GRACE_MS = 5_000;
/** Validates outgoing frames; the text limit is the server's to enforce. */
const OUTGOING_SCHEMA = clientFrameSchema(Number.MAX_SAFE_INTEGER);

interface Attempt {
  socket: WebSocketLike;
  url: string;
  since: number | undefined;
  /** The token came from the token function just before this attempt. */
  isTokenFresh: boolean;
  isOpen: boolean;
  status: number | undefined;
  /** The server's JSON error of a refused upgrade, when the implementation lets us read it (`ws`). */
  refusal: { code: string; message: string } | undefined;
  /** The implementation reports refused upgrades (`ws`): a close before `open` without one is a network failure. */
  canSeeRefusals: boolean;
}

/**
 * A connection to one room that stays up on its own.
 *
 * @example
 * const client = new RoomClient({
 *   url: "https://rooms.example.com",
 *   room: "lobby",
 *   token: () => fetch("/my-token").then((r) => r.text()),
 * });
 * client.on("message", (m) => console.log(m.seq, m.from.name, m.text));
 * const { seq } = await client.send("hello");
 *
 * `TData` is the type of messages' `data`; give `dataSchema` (a valibot schema) to have incoming
 * `data` checked against it (and `TData` inferred from it).
 */
export class RoomClient<TData = unknown> {
  readonly room: string;
  readonly #options: RoomClientOptions<TData>;
  readonly #backoff: BackoffOptions;
  readonly #WebSocket: WebSocketConstructor;
  readonly #events = new Emitter<RoomClientEvents<TData>>();
  readonly #outbox: Outbox;
  readonly #idPrefix = randomId();
  #idCounter = 0;

  #state: ConnectionState = "connecting";
  /** Bumped whenever an attempt starts or the client stops: async continuations of older ones give up. */
  #epoch = 0;
  #current: Attempt | undefined;
  #attempt = 0;
  #lastSeq: number | undefined;
  #user: User | undefined;
  #users = new Map<string, PresenceUser>();
  /** This user's presence state, as last set: sent again on every (re)connect. */
  #presence: string | undefined;
  #liveness: Liveness | undefined;
  /** The sender named by the `binary` frame just received, for the binary frame that follows it. */
  #binaryFrom: User | undefined;
  /** While set, the resume replay is still arriving; sends wait until it is done. */
  #replayUntil: number | undefined;

  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  #probe: AbortController | undefined;
  #isListeningOnline = false;

  constructor(options: RoomClientOptions<TData>) {
    const room = v.safeParse(RoomIdSchema, options.room);
    if (!room.success) throw new TypeError(`room: ${room.issues[0].message}`);
    if (typeof options.token !== "string" && typeof options.token !== "function") {
      throw new TypeError("token must be a string or a function returning one");
    }
    if (options.since !== undefined && !(Number.isSafeInteger(options.since) && options.since >= 0)) {
      throw new TypeError("since must be a whole number ≥ 0");
    }
    connectUrl(options.url, room.output, undefined); // throws a TypeError on a bad url
    this.room = room.output;
    this.#options = options;
    this.#backoff = resolveBackoff(options.reconnect);
    this.#WebSocket = resolveWebSocket(options.WebSocket);
    if (options.pingIntervalMs !== undefined) positive(options.pingIntervalMs, "pingIntervalMs");
    positive(options.pongTimeoutMs ?? 1, "pongTimeoutMs");
    this.#outbox = new Outbox({
      maxQueue: positive(options.maxQueue ?? 100, "maxQueue", true),
      ackTimeoutMs: positive(options.ackTimeoutMs ?? 10_000, "ackTimeoutMs"),
      sendDeadlineMs: positive(options.sendDeadlineMs ?? 60_000, "sendDeadlineMs"),
      pace: {
        perSecond: positive(options.rateLimit?.perSecond ?? 20, "rateLimit.perSecond"),
        burst: positive(options.rateLimit?.burst ?? 40, "rateLimit.burst", true),
      },
      onStall: () => this.#onStall(),
    });
    // Not if close() came first (React strict mode mounts, unmounts and mounts again at once).
    if (options.autoConnect ?? true) {
      const epoch = this.#epoch;
      queueMicrotask(() => {
        if (epoch === this.#epoch) void this.#connect();
      });
    } else this.#state = "closed";
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this.#state;
  }

  /** The highest room `seq` seen (what the next connection resumes from). */
  get lastSeq(): number | undefined {
    return this.#lastSeq;
  }

  /** Who this connection is, from the latest `welcome`. */
  get user(): User | undefined {
    return this.#user;
  }

  /** Who is in the room, from `welcome` and `presence` frames, each with its presence `state` once set. */
  get users(): PresenceUser[] {
    return [...this.#users.values()];
  }

  /**
   * Sends an ephemeral signal (a typing indicator, a cursor) to the room's other connections, or
   * only to user `to`'s. Fire and forget: never stored or acknowledged, not queued while
   * disconnected; returns whether it was written. The server drops signals past the user's
   * SIGNAL_RATE_PER_SECOND (with one `rate_limited` error event per run of drops). Throws a
   * `TypeError` for data that is not JSON.
   *
   * @example
   * input.addEventListener("input", () => client.signal({ typing: true }));
   * client.on("signal", ({ from, data }) => showTyping(from, data));
   */
  signal(data: unknown, options: SignalOptions = {}): boolean {
    const frame = { type: "signal" as const, data, ...(options.to === undefined ? {} : { to: options.to }) };
    const text = outgoing(frame, "signal");
    return this.#state === "open" && this.#write(text);
  }

  /**
   * Sets this user's presence state (a small JSON object; the server's PRESENCE_STATE_MAX_BYTES,
   * 1 KiB by default), shown to everyone in `users` and as presence `update` events. It is per user:
   * the last state set on any of its connections wins. Sent now when open, and again after every
   * reconnect. Throws a `TypeError` for a state that is not a JSON object.
   *
   * @example
   * client.setPresence({ status: "busy" });
   */
  setPresence(state: PresenceState): void {
    const checked = v.safeParse(PresenceStateSchema, state);
    if (!checked.success) throw new TypeError(`state: ${checked.issues[0].message}`);
    this.#presence = outgoing({ type: "presence", state }, "presence");
    if (this.#state === "open") this.#write(this.#presence);
  }

  /** Sends waiting for a connection. */
  get queued(): number {
    return this.#outbox.queued;
  }

  /** Listens to an event; returns the function that stops listening. */
  on<K extends keyof RoomClientEvents<TData>>(type: K, listener: Listener<RoomClientEvents<TData>[K]>): () => void {
    return this.#events.on(type, listener);
  }

  off<K extends keyof RoomClientEvents<TData>>(type: K, listener: Listener<RoomClientEvents<TData>[K]>): void {
    this.#events.off(type, listener);
  }

  /**
   * Connects (with `autoConnect: false`), or connects again after `close()` or after the client
   * stopped. Does nothing while the client is connecting, open or reconnecting.
   */
  connect(): void {
    if (this.#state !== "closed") return;
    this.#attempt = 0;
    this.#setState("connecting");
    void this.#connect();
  }

  /** Closes the connection for good: stops every timer and rejects every unacknowledged send. */
  close(): void {
    if (this.#state === "closed") return;
    this.#stop({ code: "closed_by_client", message: "closed by the client" }, CLOSE_CODES.normal);
  }

  /**
   * Sends a message to the room: a string as `text`, anything else as `data` (JSON). Resolves with
   * the `ack` (`seq` for a room message) once, and only once, the server stored it; rejects with a
   * `RoomClientError` carrying the message's `id`. While disconnected the send waits in a bounded
   * queue and goes out, in order, once the client is back; a room message written on a connection
   * that died is written again with the same id (the server stores an id once). It fails on its own
   * only when `sendDeadlineMs` passes (`send_timeout`; see `wasWritten`).
   */
  send(content: string | TData, options: SendOptions = {}): Promise<SendResult> {
    const id = options.id ?? `${this.#idPrefix}${(++this.#idCounter).toString(36)}`;
    if (this.#state === "closed") {
      return Promise.reject(new RoomClientError("closed", "the client is closed", { id, wasWritten: false }));
    }
    if (this.#outbox.has(id)) {
      return Promise.reject(
        new RoomClientError("invalid_message", `a send with id ${id} is already pending`, { id, wasWritten: false }),
      );
    }
    const message = {
      type: "message" as const,
      id,
      ...(typeof content === "string" ? { text: content } : { data: content }),
      ...(options.to === undefined ? {} : { to: options.to }),
    };
    const checked = v.safeParse(OUTGOING_SCHEMA, message);
    let frame: string | undefined;
    try {
      frame = checked.success ? JSON.stringify(message) : undefined;
    } catch {
      // Not JSON (a cycle, a BigInt): refused below.
    }
    if (frame === undefined) {
      const why = checked.success ? "data is not JSON" : (checked.issues[0].message ?? "invalid message");
      return Promise.reject(new RoomClientError("invalid_message", why, { id, wasWritten: false }));
    }
    const serialized = frame;
    return new Promise<SendResult>((resolve, reject) => {
      const pending = { id, frame: serialized, isDirect: options.to !== undefined, resolve, reject };
      if (!this.#outbox.add(pending)) {
        const why = `${this.#outbox.maxQueue} sends are already waiting`;
        reject(new RoomClientError("queue_full", why, { id, wasWritten: false }));
      }
    });
  }

  // -- connecting ----------------------------------------------------------------------------

  async #connect(): Promise<void> {
    const epoch = ++this.#epoch;
    const source = this.#options.token;
    let token: unknown;
    try {
      token = typeof source === "string" ? source : await source();
    } catch (error) {
      if (epoch === this.#epoch) this.#retry({ reason: "token_error", message: describe(error) });
      return;
    }
    if (epoch !== this.#epoch) return;
    if (typeof token !== "string" || token.length === 0) {
      this.#retry({ reason: "token_error", message: "the token function returned no token" });
      return;
    }
    const since = this.#lastSeq ?? this.#options.since;
    const url = connectUrl(this.#options.url, this.room, since);
    let socket: WebSocketLike;
    try {
      socket = openSocket(this.#WebSocket, url, [SUBPROTOCOL, `${BEARER_PROTOCOL_PREFIX}${token}`], {
        closeTimeout: SOCKET_CLOSE_TIMEOUT_MS,
      });
    } catch (error) {
      // Browsers throw when the token is not a valid subprotocol value: no retry can fix that.
      this.#stop({ code: "handshake_refused", message: `the token cannot be offered: ${describe(error)}` });
      return;
    }
    const attempt: Attempt = {
      socket,
      url,
      since,
      isTokenFresh: typeof source !== "string",
      isOpen: false,
      status: undefined,
      refusal: undefined,
      canSeeRefusals: false,
    };
    this.#current = attempt;
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
    socket.onclose = (event: SocketCloseEvent) => {
      if (this.#current === attempt) this.#onClose(attempt, event.code, event.reason);
    };
    socket.onmessage = (event: SocketMessageEvent) => {
      if (this.#current === attempt) this.#onData(attempt, event.data);
    };
    this.#connectTimer = setTimeout(() => {
      this.#connectTimer = undefined;
      if (this.#current !== attempt) return;
      this.#abandon("handshake timeout");
      this.#retry({ reason: "timeout", message: `no welcome within ${this.#connectTimeoutMs} ms` });
    }, this.#connectTimeoutMs);
  }

  get #connectTimeoutMs(): number {
    return this.#options.connectTimeoutMs ?? 10_000;
  }

  #onClose(attempt: Attempt, code: number, reason: string): void {
    const wasWelcomed = this.#state === "open";
    this.#detach();
    if (!wasWelcomed) {
      if (!attempt.isOpen) {
        void this.#onRefused(attempt);
        return;
      }
      this.#retry({ reason: "dropped", closeCode: code, message: reason });
      return;
    }
    if (code === CLOSE_CODES.messageTooBig) {
      this.#outbox.rejectNewestInFlight("message_too_big", "the server closed with 1009");
    }
    this.#outbox.requeueInFlight();
    if (code === CLOSE_CODES.forbidden) {
      this.#stop({ code: "forbidden", closeCode: code, message: reason || "forbidden" });
    } else if (code === POLICY_VIOLATION) {
      this.#stop({ code: "policy_violation", closeCode: code, message: reason || "policy violation" });
    } else if (code === CLOSE_CODES.tokenExpired) {
      if (typeof this.#options.token === "string") {
        this.#stop({ code: "token_expired", closeCode: code, message: "the token expired; give a token function" });
      } else {
        this.#retry({ reason: "token_expired", closeCode: code, message: reason }, { isImmediate: true });
      }
    } else {
      this.#retry({ reason: "dropped", closeCode: code, message: reason });
    }
  }

  /**
   * The socket closed before it opened. `ws` says the HTTP status; browsers do not, so then the
   * client asks whether the server answers HTTP at all: if it does, the upgrade was refused.
   */
  async #onRefused(attempt: Attempt): Promise<void> {
    const { status } = attempt;
    if (status !== undefined) {
      if (isTransientStatus(status)) this.#retry({ reason: "unavailable", status });
      else this.#stopRefused(attempt, status);
      return;
    }
    if (attempt.canSeeRefusals) {
      // Not refused (that would have said so): the connection broke, for example mid-handshake.
      this.#retry({ reason: "unreachable", message: "the connection failed before it opened" });
      return;
    }
    const global = globalThis as { fetch?: FetchLike };
    // Called as a method: a detached `window.fetch` throws "Illegal invocation" in browsers.
    const fetchImpl: FetchLike | undefined =
      this.#options.fetch ??
      (global.fetch ? (input, init) => (global.fetch as FetchLike).call(globalThis, input, init) : undefined);
    if (!fetchImpl) {
      this.#retry({ reason: "unreachable", message: "the connection failed before it opened" });
      return;
    }
    const epoch = this.#epoch;
    const probe = new AbortController();
    this.#probe = probe;
    const timer = setTimeout(() => probe.abort(), PROBE_TIMEOUT_MS);
    const isUp = await isReachable(probeUrl(attempt.url), fetchImpl, probe.signal);
    clearTimeout(timer);
    if (this.#probe === probe) this.#probe = undefined;
    if (epoch !== this.#epoch || this.#state === "closed") return;
    if (isUp) this.#stopRefused(attempt, undefined);
    else this.#retry({ reason: "unreachable", message: "the server did not answer" });
  }

  #stopRefused(attempt: Attempt, status: number | undefined): void {
    const { refusal } = attempt;
    const http = status === undefined ? "" : `HTTP ${status}`;
    const why = [http, refusal && `${refusal.code}: ${refusal.message}`].filter(Boolean).join(", ");
    const token = attempt.isTokenFresh ? "a fresh token" : "the token";
    this.#stop({
      code: "handshake_refused",
      message: `the server refused the connection${why ? ` (${why})` : ""} with ${token}`,
      ...(status === undefined ? {} : { status }),
      ...(refusal === undefined ? {} : { error: refusal }),
    });
  }

  #retry(info: Omit<Retry, "attempt" | "delayMs">, { isImmediate = false } = {}): void {
    this.#detach();
    this.#attempt += 1;
    if (this.#attempt > this.#backoff.maxAttempts) {
      const { reason: _reason, ...rest } = info;
      this.#stop({
        ...rest,
        code: "retries_exhausted",
        message: `gave up after ${this.#backoff.maxAttempts} attempts (${info.message ?? info.reason})`,
      });
      return;
    }
    const delayMs = isImmediate ? 0 : backoffDelay(this.#attempt, this.#backoff);
    this.#setState("reconnecting");
    this.#events.emit("retry", { attempt: this.#attempt, delayMs, ...info });
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      if (this.#state !== "closed") void this.#connect();
    }, delayMs);
    this.#listenOnline(true);
  }

  /** In browsers, coming back online cuts the current backoff wait short. */
  readonly #onOnline = () => {
    if (this.#reconnectTimer === undefined || this.#state !== "reconnecting") return;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    void this.#connect();
  };

  #listenOnline(on: boolean): void {
    const target = globalThis as { addEventListener?: EventTarget["addEventListener"] } & Partial<EventTarget>;
    if (typeof target.addEventListener !== "function" || on === this.#isListeningOnline) return;
    if (on) target.addEventListener("online", this.#onOnline);
    else target.removeEventListener?.("online", this.#onOnline);
    this.#isListeningOnline = on;
  }

  /** Stops for good. `closeCode` closes a socket that is still up (the client's own `close()`). */
  #stop(stop: Stop, closeCode?: number): void {
    this.#epoch++;
    const socket = this.#current?.socket;
    this.#detach();
    if (socket && closeCode !== undefined) safeClose(socket, closeCode, "closed by the client");
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    this.#probe?.abort();
    this.#probe = undefined;
    this.#listenOnline(false);
    this.#outbox.rejectAll("closed", stop.message);
    this.#users.clear();
    this.#setState("closed", stop);
  }

  /** Forgets the current socket: its handlers and timers. The socket itself is left as it is. */
  #detach(): void {
    const attempt = this.#current;
    this.#current = undefined;
    this.#replayUntil = undefined;
    clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
    this.#liveness?.stop();
    this.#liveness = undefined;
    this.#outbox.setWriter(undefined);
    if (!attempt) return;
    const { socket } = attempt;
    socket.onopen = null;
    socket.onmessage = null;
    socket.onclose = null;
    // Not null: `ws` throws an 'error' event that nobody listens to.
    socket.onerror = () => {};
  }

  /** Drops a connection considered dead without waiting for its closing handshake. */
  #abandon(reason: string): void {
    const socket = this.#current?.socket;
    this.#detach();
    this.#outbox.requeueInFlight();
    if (!socket) return;
    safeClose(socket, ABANDON_CODE, reason);
    // `ws` would wait up to 30 s for the peer's close frame; a dead peer never sends one.
    (socket as { terminate?: () => void }).terminate?.();
  }

  /** A written send got no ack in time: the link is stalled. Drop it; its sends go out again on the next. */
  #onStall(): void {
    if (this.#state !== "open") return;
    this.#abandon("no ack");
    this.#retry({ reason: "ack_timeout", message: `a send got no ack within ${this.#outbox.ackTimeoutMs} ms` });
  }

  #setState(state: ConnectionState, stop?: Stop): void {
    const previous = this.#state;
    if (previous === state) return;
    this.#state = state;
    this.#events.emit("state", stop ? { state, previous, stop } : { state, previous });
  }

  // -- frames --------------------------------------------------------------------------------

  #onData(attempt: Attempt, data: unknown): void {
    if (data instanceof ArrayBuffer) {
      this.#liveness?.onFrame(false);
      const from = this.#binaryFrom;
      this.#binaryFrom = undefined;
      this.#events.emit("binary", data);
      this.#events.emit("binaryMessage", { data, from });
      return;
    }
    if (typeof data !== "string") return;
    let json: unknown;
    try {
      json = JSON.parse(data);
    } catch {
      return;
    }
    // Frames this version does not know are skipped, so a newer server can add some.
    const parsed = v.safeParse(ServerFrameSchema, json);
    if (!parsed.success) return;
    const frame = parsed.output;
    this.#liveness?.onFrame(frame.type === "pong");
    // The server names a binary frame's sender in the text frame right before it.
    this.#binaryFrom = frame.type === "binary" ? frame.from : undefined;
    switch (frame.type) {
      case "welcome":
        this.#onWelcome(attempt, frame);
        return;
      case "message":
        this.#onMessage(frame);
        return;
      case "ack":
        this.#outbox.settle(frame.id, frame.seq);
        return;
      case "error":
        if (frame.id === undefined || !this.#outbox.fail(frame.id, frame)) {
          this.#events.emit("error", new RoomClientError(frame.code, frame.message, { frame }));
        }
        return;
      case "presence":
        this.#onPresence(frame);
        return;
      case "signal":
        this.#events.emit("signal", {
          from: frame.from,
          data: frame.data,
          ...(frame.to === undefined ? {} : { to: frame.to }),
        });
        return;
      case "heartbeat":
        // Echoed, so the room can tell this client still reads (and close it if it stops).
        this.#write(data);
        return;
      case "pong":
        // The runtime answers our ping after every frame sent before it: the replay is over.
        if (this.#replayUntil !== undefined) this.#ready();
        return;
      default:
        return;
    }
  }

  #onWelcome(attempt: Attempt, welcome: WelcomeFrame): void {
    clearTimeout(this.#connectTimer);
    this.#connectTimer = undefined;
    this.#user = welcome.user;
    this.#users = new Map(
      welcome.presence.map((p) => [
        p.id,
        { id: p.id, name: p.name, ...(p.state === undefined ? {} : { state: p.state }) },
      ]),
    );
    const since = attempt.since;
    let gap: Gap | undefined;
    if (since === undefined) {
      this.#lastSeq = welcome.seq;
    } else if (welcome.seq < since) {
      // The room's log restarted (its storage was reset): count from its seq again.
      gap = { since, seq: welcome.seq, reason: "reset" };
      this.#lastSeq = welcome.seq;
    } else {
      this.#lastSeq = since;
      if (welcome.recovered === false) gap = { since, seq: welcome.seq, reason: "trimmed" };
    }
    this.#attempt = 0;
    this.#setState("open");
    if (this.#presence !== undefined) this.#write(this.#presence);
    this.#events.emit("welcome", welcome);
    if (gap) this.#events.emit("gap", gap);
    this.#startLiveness(attempt, welcome.heartbeatInterval);
    if (since !== undefined && welcome.seq > (this.#lastSeq ?? 0)) {
      this.#replayUntil = welcome.seq;
      this.#liveness?.ping();
    } else {
      this.#ready();
    }
  }

  #onPresence(frame: PresenceFrame): void {
    const { id, name } = frame.user;
    if (frame.event === "leave") this.#users.delete(id);
    else if (frame.event === "join") this.#users.set(id, { id, name });
    else this.#users.set(id, { id, name, ...(frame.state === undefined ? {} : { state: frame.state }) });
    this.#events.emit("presence", frame);
  }

  #onMessage(message: MessageFrame): void {
    if (message.seq !== undefined) {
      if (this.#lastSeq !== undefined && message.seq <= this.#lastSeq) return;
      this.#lastSeq = message.seq;
    }
    // Our own message came back (live, or in a replay after a drop): that settles its send.
    if (message.id !== undefined && message.from.id === this.#user?.id) {
      this.#outbox.settle(message.id, message.seq, true);
    }
    const checked = checkData(message, this.#options.dataSchema);
    if (checked instanceof RoomClientError) this.#events.emit("error", checked);
    else this.#events.emit("message", checked);
    if (this.#replayUntil !== undefined && (this.#lastSeq ?? 0) >= this.#replayUntil) this.#ready();
  }

  /** The connection is up and caught up: sends flow. */
  #ready(): void {
    this.#replayUntil = undefined;
    this.#outbox.setWriter((frame) => this.#write(frame));
  }

  #write(frame: string): boolean {
    const socket = this.#current?.socket;
    if (!socket || socket.readyState !== OPEN) return false;
    try {
      socket.send(frame);
      return true;
    } catch {
      return false;
    }
  }

  /** Pings every `pingIntervalMs` (default half the server's interval) and watches for pongs. */
  #startLiveness(attempt: Attempt, intervalMs: number): void {
    this.#liveness?.stop();
    this.#liveness = new Liveness({
      pingEveryMs: this.#options.pingIntervalMs ?? Math.max(MIN_PING_INTERVAL_MS, intervalMs / 2),
      pongTimeoutMs: this.#options.pongTimeoutMs ?? DEFAULT_PONG_TIMEOUT_MS,
      silentAfterMs: 2 * Math.max(intervalMs, MIN_PING_INTERVAL_MS),
      closingGraceMs: CLOSING_GRACE_MS,
      ping: () => this.#write(PING_FRAME),
      isClosing: () => attempt.socket.readyState >= CLOSING,
      onDead: (why) => {
        if (this.#current !== attempt) return;
        this.#abandon("heartbeat missed");
        this.#retry({ reason: "heartbeat", message: why });
      },
    });
  }
}

/** A client frame as text, or a `TypeError` saying why it cannot be sent. */
function outgoing(frame: unknown, what: string): string {
  const checked = v.safeParse(OUTGOING_SCHEMA, frame);
  if (!checked.success) throw new TypeError(`${what}: ${checked.issues[0].message}`);
  try {
    return JSON.stringify(frame);
  } catch (error) {
    throw new TypeError(`${what}: not JSON (${describe(error)})`);
  }
}

/** 1008: not in the server's table (it never sends it), but a proxy in front of it may. */
const POLICY_VIOLATION = 1008;

function safeClose(socket: WebSocketLike, code: number, reason: string): void {
  try {
    socket.close(code, reason);
  } catch {
    // Already closing or closed.
  }
}

function positive(value: number, name: string, isCount = false): number {
  if (!(value > 0) || (isCount && !Number.isInteger(value))) throw new TypeError(`${name} must be a positive number`);
  return value;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** 12 random base-36 characters and a dash: unique per client, so ids never collide across tabs. */
function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  return `${Array.from(bytes, (b) => (b % 36).toString(36)).join("")}-`;
}

/** The message with its `data` checked against the schema, or the error that says why it failed. */
function checkData<TData>(
  message: MessageFrame,
  schema: v.GenericSchema<unknown, TData> | undefined,
): RoomMessage<TData> | RoomClientError {
  if (schema === undefined || message.data === undefined) return message as RoomMessage<TData>;
  const result = v.safeParse(schema, message.data);
  if (result.success) return { ...message, data: result.output };
  const where = message.seq === undefined ? `message ${message.id ?? ""}` : `message seq ${message.seq}`;
  return new RoomClientError("invalid_data", `${where}: data ${result.issues[0].message}`, {
    ...(message.id === undefined ? {} : { id: message.id }),
    cause: { message, issues: result.issues },
  });
}
